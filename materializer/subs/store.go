package subs

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// store persists subscriptions in their own SQLite file, so that they survive a restart and
// can be resumed by id. WAL with synchronous=NORMAL: a commit survives a crash of the
// process (not of the machine) without an fsync on the event path.
type store struct {
	db *sql.DB
}

const storeSchema = `
CREATE TABLE IF NOT EXISTS subs (
	id TEXT PRIMARY KEY,
	hash TEXT NOT NULL,
	sql TEXT NOT NULL,
	params TEXT NOT NULL,
	named TEXT NOT NULL,
	columns TEXT NOT NULL,
	change_id INTEGER NOT NULL,
	next_rowid INTEGER NOT NULL,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sub_rows (
	sub TEXT NOT NULL,
	key BLOB NOT NULL,
	rowid INTEGER NOT NULL,
	cells BLOB NOT NULL,
	PRIMARY KEY (sub, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sub_changes (
	sub TEXT NOT NULL,
	id INTEGER NOT NULL,
	line BLOB NOT NULL,
	PRIMARY KEY (sub, id)
) WITHOUT ROWID;
`

func openStore(ctx context.Context, path string) (*store, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, storeSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create schema: %w", err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// persisted is a subscription as stored.
type persisted struct {
	id, hash  string
	st        materializer.Statement
	columns   []string
	changeID  uint64
	nextRowID int64
	rows      []storedRow
	changes   []retained
}

type storedRow struct {
	key   string
	rowid int64
	cells []log.Value
}

type retained struct {
	id   uint64
	line []byte
	// tooLarge: the change was past MaxEventBytes; line is its error event (never stored
	// or sent in full).
	tooLarge error
}

// create stores a new subscription and its first result.
func (s *store) create(ctx context.Context, p *persisted) error {
	params, err := json.Marshal(p.st.Params)
	if err != nil {
		return err
	}
	named, err := json.Marshal(p.st.Named)
	if err != nil {
		return err
	}
	cols, _ := json.Marshal(p.columns)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO subs (id, hash, sql, params, named, columns, change_id, next_rowid, created) VALUES (?,?,?,?,?,?,?,?,?)`,
		p.id, p.hash, p.st.SQL, string(params), string(named), string(cols), int64(p.changeID), p.nextRowID, time.Now().Unix()); err != nil {
		return err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO sub_rows (sub, key, rowid, cells) VALUES (?,?,?,?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for _, r := range p.rows {
		if _, err := ins.ExecContext(ctx, p.id, []byte(r.key), r.rowid, encodeValues(r.cells)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// rowOp is one change to a stored result: cells nil deletes the row.
type rowOp struct {
	key   string
	rowid int64
	cells []log.Value
}

// apply records one evaluation's effect: the changed rows, the new change events, the
// pruning of changes no longer retained, and the counters.
func (s *store) apply(ctx context.Context, id string, columns []string, ops []rowOp, changes []retained, pruneBelow uint64, changeID uint64, nextRowID int64) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Prepared once per call: a batch of commits can change thousands of rows.
	del, err := tx.PrepareContext(ctx, `DELETE FROM sub_rows WHERE sub = ? AND key = ?`)
	if err != nil {
		return err
	}
	defer del.Close()
	put, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO sub_rows (sub, key, rowid, cells) VALUES (?,?,?,?)`)
	if err != nil {
		return err
	}
	defer put.Close()
	for _, op := range ops {
		if op.cells == nil {
			_, err = del.ExecContext(ctx, id, []byte(op.key))
		} else {
			_, err = put.ExecContext(ctx, id, []byte(op.key), op.rowid, encodeValues(op.cells))
		}
		if err != nil {
			return err
		}
	}
	ins, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO sub_changes (sub, id, line) VALUES (?,?,?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for _, c := range changes {
		if _, err := ins.ExecContext(ctx, id, int64(c.id), c.line); err != nil {
			return err
		}
	}
	if pruneBelow > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sub_changes WHERE sub = ? AND id < ?`, id, int64(pruneBelow)); err != nil {
			return err
		}
	}
	cols, _ := json.Marshal(columns)
	if _, err := tx.ExecContext(ctx, `UPDATE subs SET change_id = ?, next_rowid = ?, columns = ? WHERE id = ?`, int64(changeID), nextRowID, string(cols), id); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *store) remove(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM subs WHERE id = ?`, `DELETE FROM sub_rows WHERE sub = ?`, `DELETE FROM sub_changes WHERE sub = ?`} {
		if _, err := tx.ExecContext(ctx, q, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// load reads every stored subscription.
func (s *store) load(ctx context.Context) ([]*persisted, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, hash, sql, params, named, columns, change_id, next_rowid FROM subs`)
	if err != nil {
		return nil, err
	}
	var out []*persisted
	for rows.Next() {
		p := &persisted{}
		var params, named, cols string
		var changeID int64
		if err := rows.Scan(&p.id, &p.hash, &p.st.SQL, &params, &named, &cols, &changeID, &p.nextRowID); err != nil {
			rows.Close()
			return nil, err
		}
		p.changeID = uint64(changeID)
		if err := json.Unmarshal([]byte(params), &p.st.Params); err != nil {
			rows.Close()
			return nil, fmt.Errorf("subscription %s params: %w", p.id, err)
		}
		if err := json.Unmarshal([]byte(named), &p.st.Named); err != nil {
			rows.Close()
			return nil, fmt.Errorf("subscription %s named params: %w", p.id, err)
		}
		if err := json.Unmarshal([]byte(cols), &p.columns); err != nil {
			rows.Close()
			return nil, fmt.Errorf("subscription %s columns: %w", p.id, err)
		}
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, p := range out {
		rs, err := s.db.QueryContext(ctx, `SELECT key, rowid, cells FROM sub_rows WHERE sub = ?`, p.id)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var key, cells []byte
			var r storedRow
			if err := rs.Scan(&key, &r.rowid, &cells); err != nil {
				rs.Close()
				return nil, err
			}
			r.key = string(key)
			if r.cells, err = decodeValues(cells); err != nil {
				rs.Close()
				return nil, fmt.Errorf("subscription %s row: %w", p.id, err)
			}
			p.rows = append(p.rows, r)
		}
		rs.Close()
		cs, err := s.db.QueryContext(ctx, `SELECT id, line FROM sub_changes WHERE sub = ? ORDER BY id`, p.id)
		if err != nil {
			return nil, err
		}
		for cs.Next() {
			var c retained
			var id int64
			if err := cs.Scan(&id, &c.line); err != nil {
				cs.Close()
				return nil, err
			}
			c.id = uint64(id)
			p.changes = append(p.changes, c)
		}
		cs.Close()
	}
	return out, nil
}
