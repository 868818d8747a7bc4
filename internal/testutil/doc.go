// Package testutil holds helpers shared by tests of several packages: polling a condition
// with a deadline instead of sleeping, and free loopback addresses.
//
// It must not import any Patina package, so that every package's tests can use it.
package testutil
