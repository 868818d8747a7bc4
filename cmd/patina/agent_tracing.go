package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/patinadb/patina/log"
)

// TracingConfig is the [tracing] section: OpenTelemetry spans of writes, exported with OTLP
// over HTTP; off unless otlp_endpoint is set.
type TracingConfig struct {
	// OTLPEndpoint is the collector's OTLP/HTTP traces URL, e.g.
	// http://otel-collector:4318/v1/traces (https:// for TLS). Empty: tracing off.
	OTLPEndpoint string `toml:"otlp_endpoint"`
	// SampleRatio is the share of writes without a sampled parent that are traced (a
	// request with a sampled traceparent is always traced). Default 1.
	SampleRatio float64 `toml:"sample_ratio"`
}

// tracingOptions are the agent's options of this room; config.go lists them with the others.
var tracingOptions = []option{
	{key: "tracing.otlp_endpoint", usage: "OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces): trace writes from the HTTP request to the remote fold (empty: off)",
		field: func(c *Config) any { return &c.Tracing.OTLPEndpoint }, agentOnly: true},
	{key: "tracing.sample_ratio", usage: "share of untraced writes to trace, 0 to 1 (requests with a sampled traceparent always are)",
		field: func(c *Config) any { return &c.Tracing.SampleRatio }, agentOnly: true},
}

// openTracing sets OpenTelemetry's global tracer provider to one exporting with OTLP, when
// tracing.otlp_endpoint is set (or a test preset a.tracer); it reports whether tracing is on.
// The spans come from the api, materializer and gossip packages through the global provider.
func (a *Agent) openTracing(ctx context.Context, site log.SiteID) (bool, error) {
	if a.tracer == nil {
		c := a.cfg.Tracing
		if c.OTLPEndpoint == "" {
			return false, nil
		}
		if c.SampleRatio < 0 || c.SampleRatio > 1 {
			return false, usagef("tracing.sample_ratio %v: want 0 to 1", c.SampleRatio)
		}
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.OTLPEndpoint))
		if err != nil {
			return false, usagef("tracing.otlp_endpoint %q: %v", c.OTLPEndpoint, err)
		}
		res := sdkresource.NewSchemaless(semconv.ServiceName("patina"), semconv.ServiceInstanceID(site.String()))
		a.tracer = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))))
		a.ownTracer = true
	}
	otel.SetTracerProvider(a.tracer)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	a.logger.Info("tracing on", "otlp_endpoint", a.cfg.Tracing.OTLPEndpoint)
	return true, nil
}

// closeTracing flushes and stops the provider the agent made.
func (a *Agent) closeTracing() error {
	if a.tracer == nil || !a.ownTracer {
		return nil
	}
	if err := a.tracer.Shutdown(context.Background()); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// broadcastContext is the materializer's OnCommitContext: Broadcast under the write's span.
func (a *Agent) broadcastContext(ctx context.Context, cs *log.Changeset) {
	c := a.broadcaster.Load()
	if c == nil {
		return
	}
	(*c).BroadcastContext(ctx, cs)
}
