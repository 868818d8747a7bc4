package materializer

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (OpenTelemetry, through its global provider: a no-op unless the agent configures
// an exporter). A Transact whose context carries a sampled span gets a materializer.transact
// span, and its writer group is recorded under it as materializer.commit (run, log append,
// view commit) with a log.append child; OnCommitContext then gets a context with that
// span, so the broadcast joins the trace. Apply (a remote batch) gets materializer.apply
// with log.append and materializer.fold children, under whatever span its caller has
// (gossip's receive span, which continues the origin's trace). Without a sampled span in
// the context nothing is started: the check is one context lookup.

const tracerName = "github.com/patinadb/patina/materializer"

func tracer() trace.Tracer { return otel.Tracer(tracerName) }

// traced reports whether ctx carries a sampled span.
func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsSampled() }

// traceCommitted records the writer group's spans for each traced owner (the requests whose
// transactions produced the committed changesets, in order) and returns one context per
// changeset for OnCommitContext: nil when none is traced.
func traceCommitted(owners []*request, groupStart, appendStart, appendEnd time.Time) []context.Context {
	var ctxs []context.Context
	now := time.Now()
	for i, r := range owners {
		if !traced(r.ctx) {
			continue
		}
		if ctxs == nil {
			ctxs = make([]context.Context, len(owners))
			for j := range ctxs {
				ctxs[j] = context.Background()
			}
		}
		attrs := trace.WithAttributes(attribute.Int64("patina.version", int64(r.tx.Version)), attribute.Int("patina.group", len(owners)))
		cctx, commit := tracer().Start(r.ctx, "materializer.commit", trace.WithTimestamp(groupStart), attrs)
		_, app := tracer().Start(cctx, "log.append", trace.WithTimestamp(appendStart), attrs)
		app.End(trace.WithTimestamp(appendEnd))
		commit.End(trace.WithTimestamp(now))
		// Not r.ctx itself: the caller's context ends when its request does, and the
		// broadcast runs after.
		ctxs[i] = trace.ContextWithSpanContext(context.Background(), commit.SpanContext())
	}
	return ctxs
}

// endSpan ends span, marking it failed with err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
