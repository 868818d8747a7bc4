// Package jsonscan is the byte scanner under the API's one-pass JSON decoders: the
// server's statement fast path (package api) and the Go client's reader of a transaction's
// answer (package api/client). Each reads the few shapes it expects straight from the bytes
// and gives up on anything else, leaving it to encoding/json; this package holds what they
// share, so that both read white space, strings and numbers by the same rules.
//
// It imports only the standard library, and nothing of Patina: package api/client must not
// import package api, and both import this one.
//
// Invariant: what the scanner accepts, encoding/json reads the same way. A string is taken
// only without escapes and control characters, and non-ASCII only as valid UTF-8 (when the
// caller allows it at all), because encoding/json replaces invalid bytes; a number token
// follows JSON's grammar exactly. The decoders' fuzz tests (api's FuzzFastStatements,
// api/client's FuzzDecodeExecResult) compare them with encoding/json on every input.
package jsonscan
