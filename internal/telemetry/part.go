package telemetry

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// The service.name of each part of the system.
const (
	ServiceEdge    = "contoso-edge"    // the edge: every POP, in one process or one per region
	ServiceStamp   = "contoso-stamp"   // a stamp instance's API and health service
	ServiceWorker  = "contoso-worker"  // a stamp instance's background processor (orders, comments, ratings)
	ServiceSecrets = "contoso-secrets" // the secret store
	ServicePartner = "contoso-partner" // the fulfilment partner (its stand-in)
	ServiceOps     = "contoso-ops"     // the operations plane: health model, SLOs, dashboard, chaos, OTLP sink
)

// Resource attribute keys of a part's identity (the OpenTelemetry semantic
// conventions' keys).
const (
	AttrServiceName     = "service.name"
	AttrServiceInstance = "service.instance.id"
	AttrCloudRegion     = "cloud.region"
	AttrCloudZone       = "cloud.availability_zone"
	AttrServiceVersion  = "service.version"
)

// identityAttributeKeys are the resource attributes that name a part.
var identityAttributeKeys = []attribute.Key{AttrServiceName, AttrServiceInstance, AttrCloudRegion, AttrServiceVersion}

// spanIdentityKeys are the resource attributes a received span keeps: the
// identity and the zone.
var spanIdentityKeys = append(slices.Clone(identityAttributeKeys), AttrCloudZone)

// Identity names one part of the system: the resource attributes every
// span and metric it records carries.
type Identity struct {
	// Service is service.name: one of the Service constants.
	Service string
	// Region is cloud.region, the region the part runs in; empty: none (a
	// global part, such as the secret store or an edge of several POPs).
	Region string
	// Instance is service.instance.id, which tells two instances of one
	// service apart; empty: a random id.
	Instance string
	// Version is service.version, the release the part runs, which tells
	// the stamps of a new release from the old ones beside them; empty:
	// this binary's version (buildinfo.Version).
	Version string
	// Zone is cloud.availability_zone, the failure domain inside the
	// region; empty: none.
	Zone string
}

func (id Identity) attributes() []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String(AttrServiceName, id.Service), attribute.String(AttrServiceInstance, id.Instance),
		attribute.String(AttrServiceVersion, id.Version)}
	if id.Region != "" {
		attrs = append(attrs, attribute.String(AttrCloudRegion, id.Region))
	}
	if id.Zone != "" {
		attrs = append(attrs, attribute.String(AttrCloudZone, id.Zone))
	}
	return attrs
}

// sinkAttributes are the identity attributes the sink adds to the part's
// own metric series: service.name, service.version and cloud.region, not
// the instance, so that instances of one release of a service in one
// region (an instance and its replacement) add up in one series rather
// than a new series each, while two releases side by side stay apart.
func (id Identity) sinkAttributes() []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String(AttrServiceName, id.Service), attribute.String(AttrServiceVersion, id.Version)}
	if id.Region != "" {
		attrs = append(attrs, attribute.String(AttrCloudRegion, id.Region))
	}
	return attrs
}

// Identity returns the part t records as, after OTEL_SERVICE_NAME and with
// its instance id; the zero Identity on a nil *Telemetry.
func (t *Telemetry) Identity() Identity {
	if t == nil {
		return Identity{}
	}
	return t.id
}

// Part returns the telemetry of another part of the system hosted in t's
// process (contoso up runs the edge, every stamp instance and its
// processor, the secret store and the partner in one process): its own
// trace and meter providers, whose spans and metrics carry id as their
// resource (at an OTLP collector, in the sink and, as labels, at
// MetricsHandler), beside the exporters, the Prometheus registry and the
// sink that the whole process shares. OTEL_SERVICE_NAME, when set, still
// names the service. Asking again for an identity with an Instance returns
// the same part; an identity without a Version is one with this binary's
// version. A part lasts as long as its process's telemetry: its
// Shutdown shuts every part down. On a nil *Telemetry it returns nil (off).
func (t *Telemetry) Part(id Identity) (*Telemetry, error) {
	if t == nil {
		return nil, nil
	}
	if strings.TrimSpace(id.Service) == "" {
		return nil, errors.New("telemetry: a part needs a Service")
	}
	return t.p.newPart(context.Background(), id, true)
}

// existing returns the part of p with identity id, if there is one; p.mu
// is held.
func (p *process) existingLocked(id Identity) *Telemetry {
	for _, t := range p.parts {
		if t.id == id {
			return t
		}
	}
	return nil
}
