package api

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing: with Config.Tracing set, a write (POST /v1/transactions) is a server span of
// OpenTelemetry's global provider, the child of the request's W3C traceparent header when
// it has one; the materializer and gossip continue it (materializer/trace.go,
// gossip/trace.go). Off (the default) it costs one boolean test.

const tracerName = "github.com/patinadb/patina/api"

// traceRequest starts the server span of r when tracing is on; end records err and ends it.
func (s *Server) traceRequest(ctx context.Context, r *http.Request, name string) (context.Context, func(err error)) {
	if !s.cfg.Tracing {
		return ctx, func(error) {}
	}
	ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	ctx, span := otel.Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
