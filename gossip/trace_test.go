package gossip

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/patinadb/patina/internal/testutil"
)

// goldenTraceparent is the W3C example traceparent, pinned in changeset_traced.bin.
const goldenTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// sampledContext returns a context holding a sampled remote span of traceparent tp.
func sampledContext(tb testing.TB, tp string) context.Context {
	tb.Helper()
	ctx := contextOf(context.Background(), tp)
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		tb.Fatalf("traceparent %q gives no sampled span", tp)
	}
	return ctx
}

// TestTracedFrame: a traced frame reads back as the changeset frame it wraps, with its trace
// context, plain and inside a zstd frame (the form a peer advertising both gets); the next
// frame read has none.
func TestTracedFrame(t *testing.T) {
	frame := mustFrame(t)(changesetFrame(machineChangeset(goldenSite, 7, 20), 3))
	_, want, _ := readFrame(t, frame)
	traced := tracedFrame(goldenTraceparent, frame)
	z := compressFrame(traced, 256)
	if z == nil {
		t.Fatalf("a traced frame of %d bytes did not compress", len(traced))
	}
	if _, hl := binary.Uvarint(z); z[hl] != frameZstd {
		t.Fatalf("compressed traced frame has type %d", z[hl])
	}
	for name, b := range map[string][]byte{"plain": traced, "zstd": z} {
		t.Run(name, func(t *testing.T) {
			fr := newFrameReader(bytes.NewReader(append(append([]byte(nil), b...), frame...)))
			typ, body, err := fr.next()
			if err != nil {
				t.Fatal(err)
			}
			if typ != frameChangeset || !bytes.Equal(body, want) || fr.trace != goldenTraceparent {
				t.Fatalf("read type %d, equal body %v, trace %q", typ, bytes.Equal(body, want), fr.trace)
			}
			if _, _, err := fr.next(); err != nil || fr.trace != "" {
				t.Fatalf("next frame: %v, trace %q (want none)", err, fr.trace)
			}
		})
	}
	// Only a changeset frame may be traced.
	if _, _, _, err := decodeTracedFrame(append([]byte{1, 'x'}, frameVector)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a traced vector frame: %v, want ErrProtocol", err)
	}
}

// frameBody is a whole frame's body: what follows its length and type.
func frameBody(frame []byte) []byte {
	_, hl := binary.Uvarint(frame)
	return frame[hl+1:]
}

// FuzzTracedFrame fuzzes the traced frame decoder: never a panic, every error a protocol
// error, and what it accepts wraps again to a frame that reads back the same.
func FuzzTracedFrame(f *testing.F) {
	f.Add(frameBody(readGolden(f, "changeset_traced.bin")))
	f.Add(frameBody(tracedFrame("", mustFrame(f)(changesetFrame(machineChangeset(goldenSite, 1, 2), 0)))))
	f.Add([]byte{0, frameChangeset})
	f.Fuzz(func(t *testing.T, body []byte) {
		tp, typ, inner, err := decodeTracedFrame(body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		if len(tp) > maxTraceparent || typ != frameChangeset {
			t.Fatalf("accepted a %d-byte trace context around type %d", len(tp), typ)
		}
		// Every accepted body wraps to the frame it came in, byte for byte.
		re := tracedFrame(tp, appendFrame(nil, typ, inner))
		if !bytes.Equal(frameBody(re), body) {
			t.Fatalf("re-encoded traced frame differs: %x vs %x", frameBody(re), body)
		}
	})
}

// TestTracedBroadcast runs two current nodes and one advertising itself as from before
// traced and compressed frames: a changeset broadcast under a sampled span reaches the
// current peer compressed and traced (its Apply runs in the sender's trace), and the old
// node gets it plain, never traced, from both.
func TestTracedBroadcast(t *testing.T) {
	old := func(c *Config) { c.oldWire, c.Compression = true, CompressionNone }
	a := startNode(t)
	b := startNode(t, withBootstrap(a))
	c := startNode(t, withBootstrap(a), old)
	nodes := []*testNode{a, b, c}
	waitMembers(t, nodes)

	ctx := sampledContext(t, goldenTraceparent)
	id := trace.SpanContextFromContext(ctx).TraceID()
	cs := machineChangeset(a.site, 0, 20) // well over CompressMinBytes
	if _, _, err := a.st.AppendLocal(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	a.g.BroadcastContext(ctx, cs)
	testutil.WaitFor(t, 30*time.Second, "b to apply the changeset in the sender's trace", func() bool {
		b.app.mu.Lock()
		defer b.app.mu.Unlock()
		return b.app.traces[id] > 0
	})
	waitConverged(t, nodes, 1, 30*time.Second)
	if got := metricValue(t, b.g.m.zstdWire.WithLabelValues("broadcast", "received")); got == 0 {
		t.Error("b received the traced frame uncompressed")
	}
	c.app.mu.Lock()
	defer c.app.mu.Unlock()
	if len(c.app.traces) != 0 {
		t.Errorf("the old node applied traced changesets: %v", c.app.traces)
	}
}

// BenchmarkTraceCheckOff is what a broadcast pays for tracing: off, the check of the
// context (no sampled span); on, the traceparent formatted for the frame.
func BenchmarkTraceCheckOff(b *testing.B) {
	for name, ctx := range map[string]context.Context{"off": context.Background(), "sampled": sampledContext(b, goldenTraceparent)} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				_ = traceparentOf(ctx)
			}
		})
	}
}
