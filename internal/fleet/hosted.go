package fleet

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/contoso/shoes/internal/child"
)

// StampFlags are the flags and the environment of a stamp of region on
// this machine, besides those a supervisor sets for each stamp (--region,
// --listen, --advertise, --release, --env, --fault): what a `contoso host
// --region R -- FLAGS` passes its stamps to carry the region. Its stamps
// share one last-known-good file, <data>/stamps/<region>/host.lkg.
func (f *Fleet) StampFlags(region string) (flags, env []string, err error) {
	if _, err := f.region(region); err != nil {
		return nil, nil, fmt.Errorf("stamp flags: %w", err)
	}
	return f.stampFlags(region, filepath.Join(f.cfg.DataDir, "stamps", region, "host.lkg")), f.stampEnv(), nil
}

// HandOver leaves the stamps of region to another supervisor (a `contoso
// host` carrying it): the fleet's release agent no longer starts or drains
// stamps there, and the fleet drains the stamps it runs there. Its store
// server and POP stay the fleet's; ReviveRegion no longer starts a stamp
// there. Hand a region over while no release is under way.
func (f *Fleet) HandOver(ctx context.Context, region string) error {
	r, err := f.region(region)
	if err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	f.mu.Lock()
	r.handedOver = true
	stamps := r.stamps
	f.retired = append(f.retired, r.stamps[1:]...)
	r.stamps = r.stamps[:1]
	f.mu.Unlock()
	err = each(stamps, func(s *stampProc) error {
		if !s.Running() {
			return nil
		}
		if err := s.Drain(ctx, child.StopGrace); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hand over %s: %w", region, err)
	}
	return nil
}

// handedOver reports whether another supervisor carries the stamps of
// region.
func (f *Fleet) handedOver(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.regions[name]
	return ok && r.handedOver
}
