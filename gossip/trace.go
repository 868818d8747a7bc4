package gossip

import (
	"context"
	"encoding/binary"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/patinadb/patina/log"
)

// Tracing: a changeset broadcast under a sampled span carries its W3C trace context to the
// peers, so that one trace runs from the HTTP request on the origin through the remote
// fold. The context travels in a traced frame, flagged per frame like a zstd one:
//
//	uvarint(n) | frameTraced | uvarint(len(tp)) | tp (traceparent) | changeset frame type | body
//
// and only to peers whose metadata says they read it (nodeMeta.Trace). A zstd frame may
// wrap a traced frame, never the other way round. Without a sampled span (tracing off, the
// default: OpenTelemetry's global provider is a no-op) nothing changes on the wire and no
// span is started.

// tracerName is the instrumentation scope of gossip's spans.
const tracerName = "github.com/patinadb/patina/gossip"

// maxTraceparent bounds the trace context of a traced frame (a W3C traceparent is 55 bytes).
const maxTraceparent = 256

var propagator = propagation.TraceContext{}

// traceparentOf returns the W3C traceparent of ctx's span, "" when it has no sampled one.
func traceparentOf(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c.Get("traceparent")
}

// contextOf returns ctx with the remote span context of traceparent tp as parent.
func contextOf(ctx context.Context, tp string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}

// tracedFrame wraps a changeset frame with the trace context tp.
func tracedFrame(tp string, frame []byte) []byte {
	_, hl := binary.Uvarint(frame)
	inner := frame[hl:] // type and body
	body := binary.AppendUvarint(nil, uint64(len(tp)))
	body = append(body, tp...)
	body = append(body, inner...)
	return appendFrame(nil, frameTraced, body)
}

// decodeTracedFrame returns the trace context and the inner frame of a traced frame's body.
// The length is a minimal uvarint (one encoding per frame). The trace context is only
// checked for length: a malformed one yields no parent when extracted, never an error.
func decodeTracedFrame(body []byte) (tp string, typ byte, inner []byte, err error) {
	n, hl := binary.Uvarint(body)
	if hl <= 0 || hl != uvarintLen(n) || n > maxTraceparent || uint64(len(body)-hl) < n+1 {
		return "", 0, nil, fmt.Errorf("%w: traced frame of %d bytes", ErrProtocol, len(body))
	}
	tp = string(body[hl : hl+int(n)])
	rest := body[hl+int(n):]
	if rest[0] != frameChangeset {
		return "", 0, nil, fmt.Errorf("%w: traced frame wraps a frame of type %d", ErrProtocol, rest[0])
	}
	return tp, rest[0], rest[1:], nil
}

// BroadcastContext is Broadcast under the span of ctx: when ctx holds a sampled span, a
// gossip.broadcast span is recorded and the frames to peers that read it carry its trace
// context, so that the peers' receive and fold join the trace.
func (g *Gossip) BroadcastContext(ctx context.Context, cs *log.Changeset) {
	if !trace.SpanContextFromContext(ctx).IsSampled() || cs == nil {
		g.Broadcast(cs)
		return
	}
	ctx, span := otel.Tracer(tracerName).Start(ctx, "gossip.broadcast", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("patina.site", cs.Site.String()), attribute.Int64("patina.version", int64(cs.Version)),
			attribute.Int("patina.changes", len(cs.Changes))))
	defer span.End()
	g.broadcast(cs, traceparentOf(ctx))
}

// receiveSpan starts the span of applying a received batch when some of it is traced: a
// child of the first traced changeset's remote span, linked to the others'. It returns ctx
// unchanged and a no-op end when none is.
func (g *Gossip) receiveSpan(ctx context.Context, path string, css []*log.Changeset, tps []string) (context.Context, func()) {
	var parent string
	var links []trace.Link
	for _, tp := range tps {
		if tp == "" {
			continue
		}
		if parent == "" {
			parent = tp
			continue
		}
		if sc := trace.SpanContextFromContext(contextOf(context.Background(), tp)); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if parent == "" {
		return ctx, func() {}
	}
	ctx, span := otel.Tracer(tracerName).Start(contextOf(ctx, parent), "gossip.receive", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(attribute.String("patina.path", path), attribute.Int("patina.changesets", len(css))))
	return ctx, func() { span.End() }
}
