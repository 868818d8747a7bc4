package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Scope is what a token may do. Scopes are ordered: each one includes the ones below it.
type Scope int

const (
	// ScopeNone is the zero value: no access (a route never asks for it, except public ones).
	ScopeNone Scope = iota
	// ScopeRead: queries, subscriptions, updates, the changeset stream (tail), table stats,
	// members, sync state, the dashboard's data.
	ScopeRead
	// ScopeWrite: also transactions.
	ScopeWrite
	// ScopeAdmin: also migrations, ingest of changesets, the admin API, backups.
	ScopeAdmin
)

func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return "none"
}

// ParseScope reads "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return ScopeNone, fmt.Errorf("scope %q: want read, write or admin", s)
}

// Token is one accepted bearer token, kept as the SHA-256 of the token: a config file or a
// backup of it does not give the tokens away. A plain hash (not a slow password hash) is
// enough because tokens are 256 random bits made by NewToken, not words people choose, and it
// keeps the check to one hash per request.
type Token struct {
	// Name says whose token it is, for logs; it need not be unique.
	Name  string
	Scope Scope
	// Hash is the token's SHA-256 as "sha256:<64 hex digits>" (see HashToken).
	Hash string
}

const hashPrefix = "sha256:"

// HashToken returns the hash form of a token for Token.Hash.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// NewToken returns a fresh random token: 32 bytes from crypto/rand in unpadded base64url,
// which is valid bearer syntax (RFC 6750 b64token).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// parseHash checks a "sha256:<hex>" hash and returns its 32 bytes.
func parseHash(h string) ([sha256.Size]byte, error) {
	var out [sha256.Size]byte
	hx, ok := strings.CutPrefix(h, hashPrefix)
	if !ok {
		return out, fmt.Errorf("token hash %q: want sha256:<64 hex digits> (patina token makes one)", truncateString(h, 20))
	}
	b, err := hex.DecodeString(hx)
	if err != nil || len(b) != sha256.Size {
		return out, fmt.Errorf("token hash %q: want sha256:<64 hex digits> (patina token makes one)", truncateString(h, 20))
	}
	copy(out[:], b)
	return out, nil
}

// ValidateTokens checks the hashes and scopes of tokens.
func ValidateTokens(tokens []Token) error {
	for i, t := range tokens {
		if _, err := parseHash(t.Hash); err != nil {
			return fmt.Errorf("token %d (%s): %w", i, t.Name, err)
		}
		if t.Scope < ScopeRead || t.Scope > ScopeAdmin {
			return fmt.Errorf("token %d (%s): no scope (want read, write or admin)", i, t.Name)
		}
	}
	return nil
}

// authority holds the accepted tokens by hash. Its zero value (no tokens) lets every request
// through, as an agent without a token always did.
type authority struct {
	hashes [][sha256.Size]byte
	tokens []Token
	// bad is set when a configured hash is malformed (Validate reports it in Open): then no
	// request passes, rather than the API falling open.
	bad error
}

func newAuthority(cfg *Config) *authority {
	a, err := buildAuthority(cfg)
	if err != nil {
		return &authority{bad: err}
	}
	return a
}

func buildAuthority(cfg *Config) (*authority, error) {
	a := &authority{}
	add := func(t Token) error {
		h, err := parseHash(t.Hash)
		if err != nil {
			return err
		}
		a.hashes = append(a.hashes, h)
		a.tokens = append(a.tokens, t)
		return nil
	}
	if cfg.BearerToken != "" {
		// Corrosion's single token: it keeps every power it had, so admin.
		if err := add(Token{Name: "bearer_token", Scope: ScopeAdmin, Hash: HashToken(cfg.BearerToken)}); err != nil {
			return nil, err
		}
	}
	for _, t := range cfg.Tokens {
		if err := add(t); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// enabled reports whether any token is configured (else the API is open).
func (a *authority) enabled() bool { return len(a.hashes) > 0 || a.bad != nil }

// Errors of authentication; statusOf maps them.
var (
	// errForbidden: a valid token whose scope is too small (403).
	errForbidden = errors.New("forbidden")
)

// authorize checks the bearer token of a request's headers h against the scope a route
// needs: errUnauthorized (401) when the header is missing, malformed or names no known
// token, errForbidden (403) when the token is known but its scope is below need.
func (a *authority) authorize(h requestHeaders, need Scope) (Token, error) {
	if a.bad != nil {
		return Token{}, fmt.Errorf("%w: token configuration: %v", errUnauthorized, a.bad)
	}
	tok, err := bearerToken(h)
	if err != nil {
		return Token{}, err
	}
	t, err := a.lookup(tok)
	if err != nil {
		return t, err
	}
	if t.Scope < need {
		return t, &scopeError{have: t.Scope, need: need}
	}
	return t, nil
}

// lookup returns the configured token tok is, errUnauthorized when none.
func (a *authority) lookup(tok string) (Token, error) {
	sum := sha256.Sum256([]byte(tok))
	// Every hash is compared, in constant time each, so the time taken says nothing about
	// which token (or how much of a hash) matched.
	found := -1
	for i := range a.hashes {
		if subtle.ConstantTimeCompare(sum[:], a.hashes[i][:]) == 1 && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return Token{}, fmt.Errorf("%w: unknown token", errUnauthorized)
	}
	return a.tokens[found], nil
}

// TokenChecker checks tokens that come through another door than HTTP (the PostgreSQL
// port's password) against the API's: the same hashes, the same scopes, bearer_token as
// admin.
type TokenChecker struct{ a *authority }

// NewTokenChecker returns the checker of cfg's BearerToken and Tokens; an error when a
// hash is malformed.
func NewTokenChecker(cfg *Config) (*TokenChecker, error) {
	a, err := buildAuthority(cfg)
	if err != nil {
		return nil, err
	}
	return &TokenChecker{a: a}, nil
}

// Enabled reports whether any token is configured.
func (c *TokenChecker) Enabled() bool { return c.a.enabled() }

// Check returns the token tok is; an error (ErrUnknownToken) when it is none of them.
func (c *TokenChecker) Check(tok string) (Token, error) {
	if c.a.bad != nil {
		return Token{}, c.a.bad
	}
	t, err := c.a.lookup(tok)
	if err != nil {
		return Token{}, ErrUnknownToken
	}
	return t, nil
}

// ErrUnknownToken is TokenChecker.Check's answer to a token that is not configured.
var ErrUnknownToken = errors.New("unknown token")

// scopeError is a 403: the token is valid, its scope is too small.
type scopeError struct{ have, need Scope }

func (e *scopeError) Error() string {
	return fmt.Sprintf("forbidden: this endpoint needs a %s token, this one is %s", e.need, e.have)
}
func (e *scopeError) Is(target error) bool { return target == errForbidden }

// bearerToken parses the Authorization header strictly: exactly one header, the scheme
// "Bearer" (any case, RFC 7235), exactly one space, then a b64token (RFC 6750: letters,
// digits, -._~+/ then optional trailing =) and nothing else. RFC 6750 allows several spaces;
// Patina accepts one canonical form so that a proxy or a script that mangles the header is
// told at once rather than passing by accident, and so that no whitespace is ever part of
// what is compared.
func bearerToken(h requestHeaders) (string, error) {
	vals := h.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("%w: no Authorization header (want \"Authorization: Bearer <token>\")", errUnauthorized)
	case 1:
	default:
		return "", fmt.Errorf("%w: %d Authorization headers, want one", errUnauthorized, len(vals))
	}
	v := vals[0]
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: Authorization header is not \"Bearer <token>\"", errUnauthorized)
	}
	if !isB64Token(tok) {
		return "", fmt.Errorf("%w: malformed bearer token (want \"Bearer <token>\" with one space and no other whitespace)", errUnauthorized)
	}
	return tok, nil
}

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return false
		}
	}
	return true
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ValidBearerToken reports whether tok can be sent as "Authorization: Bearer tok" (RFC 6750
// b64token), for tools that take a token from elsewhere.
func ValidBearerToken(tok string) bool { return isB64Token(tok) }
