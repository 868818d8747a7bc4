package api

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// txAnswerJSON is the answer of a committed transaction as it was written before
// appendTxAnswer: a txResponse through encoding/json.
func txAnswerJSON(t *testing.T, res materializer.TxResult, elapsed time.Duration, site log.SiteID) []byte {
	out := txResponse{
		Results: make([]stmtResult, len(res.Results)),
		Time:    jsonFloat(res.Time.Seconds()),
		ActorID: site,
	}
	if out.Time == 0 {
		out.Time = jsonFloat(elapsed.Seconds())
	}
	for i, sr := range res.Results {
		n := sr.RowsAffected
		secs := jsonFloat(sr.Time.Seconds())
		out.Results[i] = stmtResult{RowsAffected: &n, Time: &secs}
	}
	if res.Version != 0 {
		v := uint64(res.Version)
		out.Version = &v
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTxAnswerEqualsMarshal: the write answer written by hand is byte for byte the one
// encoding/json wrote (Corrosion's ExecResponse), on random results: durations from 0 and
// 1 ns to the largest, negative ones, counts and versions at their limits.
func TestTxAnswerEqualsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 6))
	durs := []time.Duration{0, 1, 999, time.Microsecond, 187 * time.Microsecond, time.Second, 90 * time.Minute, math.MaxInt64, -5, math.MinInt64}
	dur := func() time.Duration {
		if rng.IntN(2) == 0 {
			return durs[rng.IntN(len(durs))]
		}
		return time.Duration(rng.Int64N(int64(10 * time.Second)))
	}
	s := &Server{}
	for i := range 5000 {
		var res materializer.TxResult
		for range rng.IntN(5) {
			n := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, rng.Int64()}[rng.IntN(6)]
			res.Results = append(res.Results, materializer.StmtResult{RowsAffected: n, Time: dur()})
		}
		res.Time = dur()
		switch rng.IntN(3) {
		case 0:
			res.Version = 0
		case 1:
			res.Version = log.Version(rng.Uint64())
		default:
			res.Version = log.Version(1 + rng.Uint64N(1000))
		}
		site := log.SiteID{}
		if i%7 != 0 {
			site = log.NewSiteID()
		}
		elapsed := dur()
		want := txAnswerJSON(t, res, elapsed, site)
		got := appendTxAnswer(nil, res, elapsed, s.siteJSON(site))
		if string(got) != string(want) {
			t.Fatalf("%+v (elapsed %v):\n got %s\nwant %s", res, elapsed, got, want)
		}
	}
}
