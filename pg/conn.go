package pg

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// maxMessage bounds one frontend message (a query text, a Bind's parameters).
const maxMessage = 64 << 20

// session is one client connection.
type session struct {
	s      *Server
	conn   net.Conn
	be     *pgproto3.Backend
	types  *pgtype.Map
	pid    uint32
	secret uint32
	user   string
	// access is what the client may do: what its token allows, else everything (no
	// authentication, or the single SCRAM password).
	access Access

	settings map[string]string // SET values, for SHOW
	stmts    map[string]*prepared
	portals  map[string]*portal

	// tx is the transaction status ReadyForQuery reports: 'I' idle, 'T' in a BEGIN block,
	// 'E' in a failed block (statements refused until COMMIT or ROLLBACK).
	tx byte
	// block holds the writes of the BEGIN block, committed as one Patina transaction.
	block []materializer.Statement
	// skipToSync is set by an error in the extended protocol: messages are discarded until
	// the next Sync, as PostgreSQL does.
	skipToSync bool

	runMu   sync.Mutex
	running context.CancelFunc // the query in flight, for CancelRequest
}

// serveConn runs the start-up and then the session until the client leaves or the server
// closes.
func (s *Server) serveConn(c net.Conn) {
	ss := &session{s: s, conn: c, be: pgproto3.NewBackend(c, c), tx: 'I', access: AccessWrite,
		settings: map[string]string{}, stmts: map[string]*prepared{}, portals: map[string]*portal{}}
	ss.be.SetMaxBodyLen(maxMessage)
	ok, err := ss.startup()
	if err != nil {
		if !isDisconnect(err) {
			s.logger.Debug("pg start-up", "remote", c.RemoteAddr().String(), "err", err)
			s.metrics.accepted.WithLabelValues("error").Inc()
		}
		return
	}
	if !ok {
		return
	}
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		s.metrics.accepted.WithLabelValues("refused").Inc()
		ss.sendError(&pgError{code: "53300", msg: fmt.Sprintf("too many connections (max %d)", s.cfg.MaxConns)})
		ss.be.Flush()
		return
	}
	defer s.conns.Add(-1)
	s.metrics.accepted.WithLabelValues("ok").Inc()
	ss.pid, ss.secret = s.addSession(ss)
	defer s.removeSession(ss.pid)
	ss.be.Send(&pgproto3.BackendKeyData{ProcessID: ss.pid, SecretKey: binary.BigEndian.AppendUint32(nil, ss.secret)})
	ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := ss.be.Flush(); err != nil {
		return
	}
	defer ss.closeAll()
	if err := ss.loop(); err != nil && !isDisconnect(err) && s.ctx.Err() == nil {
		s.logger.Debug("pg session ended", "remote", c.RemoteAddr().String(), "err", err)
	}
}

func isDisconnect(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

// startup reads the start-up packets: SSL and GSS encryption requests, a cancel request (which
// ends the connection) and the StartupMessage, then authenticates. ok is false when the
// connection ends without a session (a cancel request, a failed password).
func (ss *session) startup() (ok bool, err error) {
	for {
		msg, err := ss.be.ReceiveStartupMessage()
		if err != nil {
			return false, err
		}
		switch msg := msg.(type) {
		case *pgproto3.SSLRequest:
			if ss.s.cfg.TLS == nil {
				if _, err := ss.conn.Write([]byte{'N'}); err != nil {
					return false, err
				}
				continue
			}
			if _, err := ss.conn.Write([]byte{'S'}); err != nil {
				return false, err
			}
			tc := tls.Server(ss.conn, ss.s.cfg.TLS)
			if err := tc.HandshakeContext(ss.s.ctx); err != nil {
				return false, fmt.Errorf("tls handshake: %w", err)
			}
			ss.conn = tc
			ss.be = pgproto3.NewBackend(tc, tc)
			ss.be.SetMaxBodyLen(maxMessage)
		case *pgproto3.GSSEncRequest:
			if _, err := ss.conn.Write([]byte{'N'}); err != nil {
				return false, err
			}
		case *pgproto3.CancelRequest:
			ss.s.cancelQuery(msg.ProcessID, binaryKey(msg.SecretKey))
			return false, nil
		case *pgproto3.StartupMessage:
			ss.user = msg.Parameters["user"]
			for k, v := range msg.Parameters {
				if k != "user" && k != "database" {
					ss.settings[strings.ToLower(k)] = v
				}
			}
			auth := ss.authenticate
			if ss.s.cfg.Authenticate != nil {
				auth = ss.authenticateToken
			}
			if ss.s.cfg.Password != "" || ss.s.cfg.Authenticate != nil {
				if err := auth(); err != nil {
					var pe *pgError
					if errors.As(err, &pe) {
						ss.s.metrics.accepted.WithLabelValues("auth_failed").Inc()
						ss.s.logger.Info("pg authentication failed", "remote", ss.conn.RemoteAddr().String(), "user", ss.user)
						ss.sendError(pe)
						ss.be.Flush()
						return false, nil
					}
					return false, err
				}
			}
			ss.be.Send(&pgproto3.AuthenticationOk{})
			for _, k := range reportedSettings {
				ss.be.Send(&pgproto3.ParameterStatus{Name: k, Value: ss.setting(k)})
			}
			return true, nil
		default:
			return false, fmt.Errorf("unexpected start-up message %T", msg)
		}
	}
}

// binaryKey reads a cancel key (4 bytes in protocol 3.0).
func binaryKey(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// reportedSettings are the parameters sent at start-up (those libpq and pgx read).
var reportedSettings = []string{
	"server_version", "server_encoding", "client_encoding", "application_name", "DateStyle",
	"IntervalStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings", "is_superuser",
	"session_authorization",
}

// defaults are the values of settings nobody SET. server_version says 15 so that clients
// (psql above all) send the catalog queries of a recent PostgreSQL.
var defaults = map[string]string{
	"server_version":                "15.0 (Patina)",
	"server_version_num":            "150000",
	"server_encoding":               "UTF8",
	"client_encoding":               "UTF8",
	"application_name":              "",
	"datestyle":                     "ISO, MDY",
	"intervalstyle":                 "postgres",
	"timezone":                      "UTC",
	"integer_datetimes":             "on",
	"standard_conforming_strings":   "on",
	"is_superuser":                  "off",
	"transaction_isolation":         "serializable",
	"default_transaction_isolation": "serializable",
	"search_path":                   "public",
	"max_identifier_length":         "63",
	"lc_collate":                    "C",
	"lc_ctype":                      "C",
}

func (ss *session) setting(name string) string {
	k := strings.ToLower(name)
	if v, ok := ss.settings[k]; ok {
		return v
	}
	if k == "session_authorization" {
		return ss.user
	}
	return defaults[k]
}

// loop serves messages until the client terminates.
func (ss *session) loop() error {
	for {
		msg, err := ss.be.Receive()
		if err != nil {
			var big *pgproto3.ExceededMaxBodyLenErr
			if errors.As(err, &big) {
				ss.sendError(&pgError{code: "54000", msg: fmt.Sprintf("message of %d bytes is larger than %d", big.ActualBodyLen, big.MaxExpectedBodyLen)})
				ss.be.Flush()
			}
			return err
		}
		if ss.skipToSync {
			if _, ok := msg.(*pgproto3.Sync); !ok {
				if _, ok := msg.(*pgproto3.Terminate); !ok {
					continue
				}
			}
		}
		switch msg := msg.(type) {
		case *pgproto3.Query:
			ss.simpleQuery(msg.String)
			ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: ss.tx})
		case *pgproto3.Parse:
			ss.extended(ss.parse(msg))
		case *pgproto3.Bind:
			ss.extended(ss.bind(msg))
		case *pgproto3.Describe:
			ss.extended(ss.describe(msg))
		case *pgproto3.Execute:
			ss.extended(ss.execute(msg))
		case *pgproto3.Close:
			ss.extended(ss.closeMsg(msg))
		case *pgproto3.Sync:
			ss.skipToSync = false
			if ss.tx == 'I' {
				ss.closePortals()
			}
			ss.be.Send(&pgproto3.ReadyForQuery{TxStatus: ss.tx})
		case *pgproto3.Flush:
		case *pgproto3.Terminate:
			return ss.be.Flush()
		case *pgproto3.FunctionCall:
			ss.sendError(&pgError{code: "0A000", msg: "the function call protocol is not supported"})
		default:
			ss.sendError(&pgError{code: "08P01", msg: fmt.Sprintf("unexpected message %T", msg)})
			ss.be.Flush()
			return fmt.Errorf("unexpected message %T", msg)
		}
		if err := ss.be.Flush(); err != nil {
			return err
		}
	}
}

// extended handles the error of an extended-protocol message: it is sent, a BEGIN block
// fails, and what follows until Sync is discarded.
func (ss *session) extended(err error) {
	if err == nil {
		return
	}
	ss.sendError(err)
	ss.fail()
	ss.skipToSync = true
}

// fail marks the BEGIN block, if any, as failed.
func (ss *session) fail() {
	if ss.tx == 'T' {
		ss.tx = 'E'
	}
}

func (ss *session) sendError(err error) {
	pe := toPgError(err)
	ss.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: pe.code, Message: pe.msg, Hint: pe.hint})
}

// queryContext returns the context a statement runs under: it ends when the server closes
// or a CancelRequest names this session.
func (ss *session) queryContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(ss.s.ctx)
	ss.runMu.Lock()
	ss.running = cancel
	ss.runMu.Unlock()
	return ctx, func() {
		ss.runMu.Lock()
		ss.running = nil
		ss.runMu.Unlock()
		cancel()
	}
}

func (ss *session) cancelRunning() {
	ss.runMu.Lock()
	if ss.running != nil {
		ss.running()
	}
	ss.runMu.Unlock()
}

func (ss *session) closePortals() {
	for name, p := range ss.portals {
		p.close()
		delete(ss.portals, name)
	}
}

func (ss *session) closeAll() {
	ss.closePortals()
	if ss.types == nil {
		return
	}
}

// typeMap is the session's pgx type map (binary numeric and parameter codecs), made on first
// use: most sessions never need it.
func (ss *session) typeMap() *pgtype.Map {
	if ss.types == nil {
		ss.types = pgtype.NewMap()
	}
	return ss.types
}

// values of a statement's parameters, ready for the materializer.
func stmtOf(sql string, params []log.Value) materializer.Statement {
	return materializer.Statement{SQL: sql, Params: params}
}
