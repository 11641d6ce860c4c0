package verify

import (
	"context"
	"time"

	"github.com/contoso/shoes/internal/chaos"
)

// ChaosInjector injects faults through the operations API (POST and
// DELETE /ops/chaos).
type ChaosInjector struct{ Client *chaos.Client }

// Inject asks for the fault with its duration; it heals itself after it.
func (c ChaosInjector) Inject(ctx context.Context, f Fault) (string, error) {
	a, err := c.Client.Inject(ctx, chaos.Spec{Fault: f.Fault, Target: f.Target, Duration: chaos.Duration(time.Duration(f.Duration)), Params: f.Params})
	return a.ID, err
}

// Heal heals the fault now (nothing happens when it healed already).
func (c ChaosInjector) Heal(ctx context.Context, id string) error {
	_, err := c.Client.Heal(ctx, id)
	return err
}
