package autoscale

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// maxPreScale is how far ahead a pre-scale may last.
const maxPreScale = 7 * 24 * time.Hour

// Update is a change of the scaling rules, as PUT /ops/scaling takes it:
// absent fields keep their value.
type Update struct {
	Target               *float64                `json:"target,omitempty"`
	Tolerance            *float64                `json:"tolerance,omitempty"`
	ScaleOutAfterSeconds *float64                `json:"scaleOutAfterSeconds,omitempty"`
	ScaleInAfterSeconds  *float64                `json:"scaleInAfterSeconds,omitempty"`
	Regions              map[string]RegionUpdate `json:"regions,omitempty"`
	// Instance sets every instance's capacity and simulated work.
	Instance *InstanceSettings `json:"instance,omitempty"`
	// ResetInstance puts every instance back on its own configuration's
	// capacity and work; not with Instance.
	ResetInstance bool `json:"resetInstance,omitempty"`
}

// RegionUpdate changes one region's limits.
type RegionUpdate struct {
	Min *int `json:"min,omitempty"`
	Max *int `json:"max,omitempty"`
	// PreScale sets a temporary minimum until a time (in the future, at
	// most seven days ahead).
	PreScale *PreScale `json:"preScale,omitempty"`
	// CancelPreScale removes the region's pre-scale.
	CancelPreScale bool `json:"cancelPreScale,omitempty"`
}

// seconds turns a number of seconds from the API into a duration.
func seconds(name string, v float64) (time.Duration, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > 3600 {
		return 0, shop.Invalid("", "%s %v: want seconds from 0 to 3600", name, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// Apply checks u whole and applies it, or applies nothing: a bad value is
// a shop.KindInvalid error. It returns the status after it.
func (s *Scaler) Apply(u Update) (Status, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	now := s.cfg.Now()
	p := s.policy
	limits := maps.Clone(s.limits)
	s.mu.Unlock()
	if u.Target != nil {
		p.Target = *u.Target
	}
	if u.Tolerance != nil {
		p.Tolerance = *u.Tolerance
	}
	var err error
	if u.ScaleOutAfterSeconds != nil {
		if p.ScaleOutAfter, err = seconds("scaleOutAfterSeconds", *u.ScaleOutAfterSeconds); err != nil {
			return Status{}, err
		}
	}
	if u.ScaleInAfterSeconds != nil {
		if p.ScaleInAfter, err = seconds("scaleInAfterSeconds", *u.ScaleInAfterSeconds); err != nil {
			return Status{}, err
		}
	}
	if err := p.Validate(); err != nil {
		return Status{}, shop.Invalid("", "%v", err)
	}
	known := s.cfg.Regions()
	for _, region := range slices.Sorted(maps.Keys(u.Regions)) {
		ru := u.Regions[region]
		if !slices.Contains(known, region) {
			return Status{}, shop.Invalid("", "region %q: not a region of the deployment (%v)", region, known)
		}
		l, ok := limits[region]
		if !ok {
			l = s.cfg.Default
		}
		if ru.Min != nil {
			l.Min = *ru.Min
		}
		if ru.Max != nil {
			l.Max = *ru.Max
		}
		if ru.CancelPreScale {
			l.PreScale = nil
		}
		if ru.PreScale != nil {
			if ru.CancelPreScale {
				return Status{}, shop.Invalid("", "region %s: preScale and cancelPreScale together", region)
			}
			if !ru.PreScale.Until.After(now) || ru.PreScale.Until.Sub(now) > maxPreScale {
				return Status{}, shop.Invalid("", "region %s: pre-scale until %s: want a time in the next %s", region, ru.PreScale.Until.Format(time.RFC3339), maxPreScale)
			}
			ps := *ru.PreScale
			l.PreScale = &ps
		}
		if err := l.validate(); err != nil {
			return Status{}, shop.Invalid("", "region %s: %v", region, err)
		}
		if l.PreScale != nil && l.PreScale.Min > l.Max {
			return Status{}, shop.Invalid("", "region %s: pre-scale min %d above max %d", region, l.PreScale.Min, l.Max)
		}
		limits[region] = l
	}
	if u.Instance != nil || u.ResetInstance {
		var is *InstanceSettings
		switch {
		case s.cfg.Instances == nil:
			return Status{}, shop.Errorf(shop.KindConflict, "", "this deployment's instances take their capacity and work from their own configuration")
		case u.Instance != nil && u.ResetInstance:
			return Status{}, shop.Invalid("", "give instance or resetInstance, not both")
		case u.Instance != nil:
			v := *u.Instance
			if err := shop.ValidateInstanceSettings(v.Capacity, v.WorkMs); err != nil {
				return Status{}, err
			}
			is = &v
		}
		if err := s.cfg.Instances.SetInstanceSettings(is); err != nil {
			return Status{}, err
		}
	}
	s.mu.Lock()
	s.policy, s.limits = p, limits
	s.record(Event{At: now, Action: "settings", Reason: describe(u)})
	s.mu.Unlock()
	return s.Status(), nil
}

// describe is u in a line for the event log.
func describe(u Update) string {
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Sprintf("%+v", u)
	}
	return string(b)
}

// Routes registers the scaling routes on mux; the caller puts its
// operations guard in front of them:
//
//	GET /ops/scaling   the rules, every region's last evaluation, the events
//	PUT /ops/scaling   change the rules (an Update); 200 with the status
func (s *Scaler) Routes(mux *http.ServeMux, log *slog.Logger) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(log, f) }
	mux.Handle("GET /ops/scaling", h(func(w http.ResponseWriter, r *http.Request) error {
		httpapi.WriteJSON(w, http.StatusOK, s.Status())
		return nil
	}))
	mux.Handle("PUT /ops/scaling", h(func(w http.ResponseWriter, r *http.Request) error {
		var u Update
		if err := httpapi.DecodeJSON(r, &u); err != nil {
			return err
		}
		st, err := s.Apply(u)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
		return nil
	}))
}

// Client is a client of the scaling API, for tools.
type Client struct {
	BaseURL string       // the operations address
	Token   string       // an admin's bearer token; empty: none
	HTTP    *http.Client // nil: http.DefaultClient
}

// Status reads the scaling status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	if err := c.api().Do(ctx, http.MethodGet, "/ops/scaling", nil, &st); err != nil {
		return Status{}, fmt.Errorf("read scaling: %w", err)
	}
	return st, nil
}

// Apply sends u and returns the status after it.
func (c *Client) Apply(ctx context.Context, u Update) (Status, error) {
	body, err := json.Marshal(u)
	if err != nil {
		return Status{}, fmt.Errorf("change scaling: %w", err)
	}
	var st Status
	if err := c.api().Do(ctx, http.MethodPut, "/ops/scaling", body, &st); err != nil {
		return Status{}, fmt.Errorf("change scaling: %w", err)
	}
	return st, nil
}

func (c *Client) api() *httpapi.Client {
	return &httpapi.Client{BaseURL: c.BaseURL, Token: c.Token, HTTP: c.HTTP}
}
