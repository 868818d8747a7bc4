package subs

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestSubscribeDuringWrites: subscriptions created, and clients attached, while writes go on
// reach the same result as the statement at the next quiet point: no commit falls between a
// first evaluation and the processing of notices.
func TestSubscribeDuringWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	sc := randomSchema(r)
	src := newSQLSource(t, sc.ddl...)
	e := openEngine(t, src, Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wr := rand.New(rand.NewPCG(4, 6))
		for {
			select {
			case <-stop:
				return
			default:
			}
			src.write(t, sc.randomOp(wr), sc.randomOp(wr))
		}
	}()
	type live struct {
		sh  shape
		st  *Stream
		m   *mirror
		sql string
	}
	var lives []*live
	// Each round makes new subscriptions (the comment makes the text new).
	for round := range 3 {
		for _, sh := range shapes {
			sql := sh.text(sc) + fmt.Sprintf(" /* %d */", round)
			lives = append(lives, &live{sh: sh, sql: sql, st: subscribeSt(t, e, sh.stmt(sql), Options{}), m: newMirror()})
		}
	}
	close(stop)
	wg.Wait()
	waitSeq(t, e, src.write(t, sc.randomOp(r)))
	for _, l := range lives {
		l.m.readUntil(t, l.st, subInfo(t, e, l.st.ID).ChangeID)
		_, want := queryStmt(t, src, l.sh.stmt(l.sql))
		if got, w := l.m.multiset(), multiset(want); !slices.Equal(got, w) {
			t.Errorf("%s: got %q, want %q", l.sh.name, got, w)
		}
	}
}
