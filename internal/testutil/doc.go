// Package testutil holds helpers shared by tests of several packages: polling a condition
// with a deadline instead of sleeping, free loopback addresses, and small tmpfs mounts that
// fill for disk-full tests.
//
// It must not import any Patina package, so that every package's tests can use it.
package testutil
