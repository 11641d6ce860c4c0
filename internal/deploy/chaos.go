package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/secrets/secretstore"
)

// chaosTarget is the deployment as the fault library sees it.
type chaosTarget struct{ d *Deployment }

var _ chaos.Target = chaosTarget{}

func (t chaosTarget) Regions() []string                          { return t.d.regionNames() }
func (t chaosTarget) KillRegion(region string) error             { return t.d.KillRegion(region) }
func (t chaosTarget) StopServer(region string) error             { return t.d.StopServer(region) }
func (t chaosTarget) StartServer(region string) error            { return t.d.StartServer(region) }
func (t chaosTarget) SetDrained(region string, on bool) error    { return t.d.SetDrained(region, on) }
func (t chaosTarget) KillInstance(region string) (string, error) { return t.d.KillInstance(region) }

func (t chaosTarget) ReviveRegion(ctx context.Context, region string) error {
	return t.d.ReviveRegion(ctx, region)
}

func (t chaosTarget) AddInstance(ctx context.Context, region string) (string, error) {
	return t.d.AddInstance(ctx, region)
}

func (t chaosTarget) KillZone(region string, k int) ([]string, error) {
	return t.d.KillZone(zoneRegion(region), k)
}

func (t chaosTarget) RestoreZone(ctx context.Context, region string, k int) error {
	return t.d.RestoreZone(ctx, zoneRegion(region), k)
}

// zoneRegion is a zone fault's region as the deployment takes it: empty
// for every region.
func zoneRegion(region string) string {
	if region == chaos.EveryRegion {
		return ""
	}
	return region
}

// Link is the simulated link between two regions; a pair that has never
// carried traffic gets one now.
func (t chaosTarget) Link(a, b string) (chaos.Link, error) {
	if l, ok := t.d.net.Link(a, b); ok {
		return l, nil
	}
	return nil, fmt.Errorf("no link between %s and %s", a, b)
}

func (t chaosTarget) SetSecretStore(up bool) {
	if up {
		t.d.services.store.SetMode(secretstore.Up)
		return
	}
	t.d.services.store.SetMode(secretstore.Unavailable)
}

func (t chaosTarget) SetPartner(mode string, delay time.Duration) error {
	m := partner.Mode(mode)
	if !m.Valid() {
		return fmt.Errorf("partner mode %q", mode)
	}
	t.d.services.partner.SetMode(m, delay)
	return nil
}
