package pg

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SCRAM-SHA-256 (RFC 5802, RFC 7677), the server side, as PostgreSQL runs it: the user name
// in the SCRAM messages is ignored (the StartupMessage has it) and channel binding is not
// offered (the mechanism list has no -PLUS), so a client that asks for it is refused.

const scramIterations = 4096

// authenticate runs the SCRAM exchange against the configured password. A wrong password
// or a protocol violation is a *pgError (28P01 or 08P01); other errors are I/O.
func (ss *session) authenticate() error {
	ss.be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
	if err := ss.be.Flush(); err != nil {
		return err
	}
	ss.be.SetAuthType(pgproto3.AuthTypeSASL)
	msg, err := ss.be.Receive()
	if err != nil {
		return err
	}
	first, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return errf("08P01", fmt.Sprintf("expected a SASL initial response, got %T", msg))
	}
	if first.AuthMechanism != "SCRAM-SHA-256" {
		return errf("28000", fmt.Sprintf("SASL mechanism %q is not supported (want SCRAM-SHA-256)", first.AuthMechanism))
	}
	sc, err := newScram(ss.s.cfg.Password, string(first.Data))
	if err != nil {
		return errf("08P01", "malformed SCRAM message: "+err.Error())
	}
	ss.be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(sc.serverFirst)})
	if err := ss.be.Flush(); err != nil {
		return err
	}
	ss.be.SetAuthType(pgproto3.AuthTypeSASLContinue)
	msg, err = ss.be.Receive()
	if err != nil {
		return err
	}
	final, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return errf("08P01", fmt.Sprintf("expected a SASL response, got %T", msg))
	}
	serverFinal, err := sc.verify(string(final.Data))
	if err != nil {
		if errors.Is(err, errBadProof) {
			return errf("28P01", fmt.Sprintf("password authentication failed for user %q", ss.user))
		}
		return errf("08P01", "malformed SCRAM message: "+err.Error())
	}
	ss.be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)})
	ss.be.SetAuthType(pgproto3.AuthTypeOk)
	return nil
}

var errBadProof = errors.New("wrong password")

// authenticateToken asks for the password in cleartext, over TLS only, and takes it as a
// Patina token (Config.Authenticate): its scope becomes the session's access. A client
// without TLS is refused before it sends anything secret.
func (ss *session) authenticateToken() error {
	if _, ok := ss.conn.(*tls.Conn); !ok {
		return errf("28000", "this server takes Patina tokens as passwords over TLS only: connect with sslmode=require")
	}
	ss.be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := ss.be.Flush(); err != nil {
		return err
	}
	ss.be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
	msg, err := ss.be.Receive()
	if err != nil {
		return err
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return errf("08P01", fmt.Sprintf("expected a password message, got %T", msg))
	}
	access, err := ss.s.cfg.Authenticate(pw.Password)
	if err != nil || (access != AccessRead && access != AccessWrite) {
		return errf("28P01", fmt.Sprintf("password authentication failed for user %q (the password is a Patina token)", ss.user))
	}
	ss.access = access
	return nil
}

// scram is one server-side exchange.
type scram struct {
	password        string
	salt            []byte
	gs2             string // the client's GS2 header ("n,," or "y,,")
	clientFirstBare string
	nonce           string // client nonce + server nonce
	serverFirst     string
}

// newScram reads the client-first message and makes the server-first one.
func newScram(password, clientFirst string) (*scram, error) {
	// gs2-header: "n,," (no channel binding), "y,," (client supports it, server does not
	// offer it), "p=..." (required: refused). An authzid between the commas is refused.
	parts := strings.SplitN(clientFirst, ",", 3)
	if len(parts) != 3 {
		return nil, errors.New("client-first-message has no gs2 header")
	}
	switch {
	case parts[0] == "n" || parts[0] == "y":
	case strings.HasPrefix(parts[0], "p="):
		return nil, errors.New("channel binding is not supported")
	default:
		return nil, fmt.Errorf("bad gs2 flag %q", parts[0])
	}
	if parts[1] != "" {
		return nil, errors.New("authorization identity is not supported")
	}
	sc := &scram{password: password, gs2: parts[0] + "," + parts[1] + ",", clientFirstBare: parts[2]}
	var cnonce string
	for _, attr := range strings.Split(parts[2], ",") {
		if v, ok := strings.CutPrefix(attr, "r="); ok {
			cnonce = v
		}
		if strings.HasPrefix(attr, "m=") {
			return nil, errors.New("mandatory extensions are not supported")
		}
	}
	if cnonce == "" {
		return nil, errors.New("client-first-message has no nonce")
	}
	var b [18]byte
	rand.Read(b[:])
	sc.nonce = cnonce + base64.RawStdEncoding.EncodeToString(b[:])
	sc.salt = make([]byte, 16)
	rand.Read(sc.salt)
	sc.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", sc.nonce, base64.StdEncoding.EncodeToString(sc.salt), scramIterations)
	return sc, nil
}

// verify checks the client-final message's proof and returns the server-final message.
func (sc *scram) verify(clientFinal string) (string, error) {
	i := strings.LastIndex(clientFinal, ",p=")
	if i < 0 {
		return "", errors.New("client-final-message has no proof")
	}
	withoutProof, proofB64 := clientFinal[:i], clientFinal[i+3:]
	var cb, nonce string
	for _, attr := range strings.Split(withoutProof, ",") {
		if v, ok := strings.CutPrefix(attr, "c="); ok {
			cb = v
		}
		if v, ok := strings.CutPrefix(attr, "r="); ok {
			nonce = v
		}
	}
	if cb != base64.StdEncoding.EncodeToString([]byte(sc.gs2)) {
		return "", errors.New("channel binding does not match the gs2 header")
	}
	if nonce != sc.nonce {
		return "", errors.New("nonce does not match")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return "", errors.New("bad proof encoding")
	}
	salted, err := pbkdf2.Key(sha256.New, sc.password, sc.salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	clientKey := hmacSum(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	authMessage := sc.clientFirstBare + "," + sc.serverFirst + "," + withoutProof
	clientSig := hmacSum(storedKey[:], authMessage)
	got := make([]byte, sha256.Size)
	for i := range got {
		got[i] = proof[i] ^ clientSig[i]
	}
	gotStored := sha256.Sum256(got)
	if subtle.ConstantTimeCompare(gotStored[:], storedKey[:]) != 1 {
		return "", errBadProof
	}
	serverSig := hmacSum(hmacSum(salted, "Server Key"), authMessage)
	return "v=" + base64.StdEncoding.EncodeToString(serverSig), nil
}

func hmacSum(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
