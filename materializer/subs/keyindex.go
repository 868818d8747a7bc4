package subs

import "sync"

// keyIndex lets a batch of commits reach only the subscriptions it may change, instead of
// every subscription on the changed tables: with a thousand subscriptions of the
// `WHERE app_id = ?` kind on one table, a write concerns one or two of them.
//
// A subscription is keyed on table t when it is in pk mode, re-evaluates t by key, and has
// a `column = constant` prefilter on t. A changed row of t can then change its result only
// if the subscription holds a row with that key now (the row may leave or change), or the
// row's new value passes the prefilter (it may enter). Other subscriptions on t are plain:
// every batch that touches t reaches them.
//
// The holders index is consistent with the results because every evaluation of a
// registered subscription runs under Engine.evalMu: no evaluation can index a row between a
// batch's look-up and its updates (a new subscription tells the index its keys when it is
// registered, under the lock).
type keyIndex struct {
	mu sync.Mutex
	// plain: table -> subscriptions every change of the table reaches.
	plain map[string]map[*sub]struct{}
	// keyed: table -> subscription -> its prefilter on the table.
	keyed map[string]map[*sub]*pred
	// byValue: table -> column -> eq key -> subscriptions whose prefilter may accept it.
	byValue map[string]map[int]map[string]map[*sub]struct{}
	// holders: table -> packed pk -> subscriptions whose result holds a row with that key
	// (keyed subscriptions only).
	holders map[string]map[string]map[*sub]struct{}
	// retry: subscriptions whose next evaluation must be a full one (the last failed, or
	// restored); every batch on their tables reaches them.
	retry map[*sub]struct{}
}

func newKeyIndex() *keyIndex {
	return &keyIndex{
		plain:   map[string]map[*sub]struct{}{},
		keyed:   map[string]map[*sub]*pred{},
		byValue: map[string]map[int]map[string]map[*sub]struct{}{},
		holders: map[string]map[string]map[*sub]struct{}{},
		retry:   map[*sub]struct{}{},
	}
}

func addTo[K comparable](m map[K]map[*sub]struct{}, k K, s *sub) {
	set := m[k]
	if set == nil {
		set = map[*sub]struct{}{}
		m[k] = set
	}
	set[s] = struct{}{}
}

func removeFrom[K comparable](m map[K]map[*sub]struct{}, k K, s *sub) {
	if set := m[k]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// keyedOn returns the prefilter by which s is keyed on table t, or nil.
func keyedOn(s *sub, t string) *pred {
	p := s.plan
	if p.mode != modePK {
		return nil
	}
	inst, ok := p.restrict[t]
	if !ok {
		return nil
	}
	for i := range p.preds {
		if p.preds[i].inst == inst {
			return &p.preds[i]
		}
	}
	return nil
}

func (ki *keyIndex) add(s *sub) {
	ki.mu.Lock()
	defer ki.mu.Unlock()
	for t := range s.plan.tables {
		pr := keyedOn(s, t)
		if pr == nil {
			addTo(ki.plain, t, s)
			continue
		}
		if ki.keyed[t] == nil {
			ki.keyed[t] = map[*sub]*pred{}
			ki.byValue[t] = map[int]map[string]map[*sub]struct{}{}
		}
		ki.keyed[t][s] = pr
		byKey := ki.byValue[t][pr.col]
		if byKey == nil {
			byKey = map[string]map[*sub]struct{}{}
			ki.byValue[t][pr.col] = byKey
		}
		for _, k := range pr.keys {
			addTo(byKey, k, s)
		}
	}
}

func (ki *keyIndex) remove(s *sub) {
	ki.mu.Lock()
	defer ki.mu.Unlock()
	for t := range s.plan.tables {
		removeFrom(ki.plain, t, s)
		pr, ok := ki.keyed[t][s]
		if !ok {
			continue
		}
		delete(ki.keyed[t], s)
		for _, k := range pr.keys {
			removeFrom(ki.byValue[t][pr.col], k, s)
		}
	}
	delete(ki.retry, s)
	for _, byPK := range ki.holders {
		for pk, set := range byPK {
			if _, ok := set[s]; ok {
				removeFrom(byPK, pk, s)
			}
		}
	}
}

// failing records whether s needs a full evaluation.
func (ki *keyIndex) failing(s *sub, v bool) {
	ki.mu.Lock()
	defer ki.mu.Unlock()
	if v {
		ki.retry[s] = struct{}{}
	} else {
		delete(ki.retry, s)
	}
}

// hold records that s's result has (held) or no longer has a row with key pk of table t.
func (ki *keyIndex) hold(s *sub, t, pk string, held bool) {
	ki.mu.Lock()
	defer ki.mu.Unlock()
	if _, ok := ki.keyed[t][s]; !ok {
		return
	}
	byPK := ki.holders[t]
	if byPK == nil {
		byPK = map[string]map[*sub]struct{}{}
		ki.holders[t] = byPK
	}
	if held {
		addTo(byPK, pk, s)
	} else {
		removeFrom(byPK, pk, s)
	}
}

// candidates returns the subscriptions a batch that changed the rows pks of table t may
// change. fetch reads a changed row's current values (nil when it is gone); rowKeys gives
// the eq keys of one of its columns. all is set when the rows cannot be told apart (a
// fetch failed, the schema is unknown): then every subscription on t is a candidate.
func (ki *keyIndex) candidates(t string, pks map[string]struct{}, lookup func(pk string) (found bool, keys func(col int) []string, ok bool), into map[*sub]struct{}) {
	ki.mu.Lock()
	defer ki.mu.Unlock()
	for s := range ki.plain[t] {
		into[s] = struct{}{}
	}
	for s := range ki.retry {
		if s.plan.tables[t] {
			into[s] = struct{}{}
		}
	}
	if len(ki.keyed[t]) == 0 {
		return
	}
	for pk := range pks {
		for s := range ki.holders[t][pk] {
			into[s] = struct{}{}
		}
		found, keys, ok := lookup(pk)
		if !ok {
			for s := range ki.keyed[t] {
				into[s] = struct{}{}
			}
			return
		}
		if !found {
			continue
		}
		for col, byKey := range ki.byValue[t] {
			for _, k := range keys(col) {
				for s := range byKey[k] {
					into[s] = struct{}{}
				}
			}
		}
	}
}
