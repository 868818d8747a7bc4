package api

import (
	"context"

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

// traceRequest starts the server span of a request (method, path, its headers as carrier)
// when tracing is on; end records err and ends it.
func (s *Server) traceRequest(ctx context.Context, carrier propagation.TextMapCarrier, method, path string) (context.Context, func(err error)) {
	if !s.cfg.Tracing {
		return ctx, func(error) {}
	}
	ctx = propagation.TraceContext{}.Extract(ctx, carrier)
	ctx, span := otel.Tracer(tracerName).Start(ctx, method+" "+path, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("url.path", path)))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
