package main

import (
	"strings"
	"testing"
	"time"
)

func TestScaleFlagsMakeTheUpdate(t *testing.T) {
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	t.Run("no flags: print the status", func(t *testing.T) {
		u, err := scaleUpdate(set(), "", 0, 0, "", false, 0, 0, 0, now)
		if err != nil || u != nil {
			t.Fatalf("update %+v, error %v; want none", u, err)
		}
	})
	t.Run("limits", func(t *testing.T) {
		u, err := scaleUpdate(set("min", "max"), "eastus", 2, 8, "", false, 0, 0, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		ru := u.Regions["eastus"]
		if ru.Min == nil || *ru.Min != 2 || ru.Max == nil || *ru.Max != 8 || ru.PreScale != nil {
			t.Fatalf("region update %+v", ru)
		}
	})
	t.Run("pre-scale for a duration", func(t *testing.T) {
		u, err := scaleUpdate(set("min", "until"), "eastus", 6, 0, "2h", false, 0, 0, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		ps := u.Regions["eastus"].PreScale
		if ps == nil || ps.Min != 6 || !ps.Until.Equal(now.Add(2*time.Hour)) || u.Regions["eastus"].Min != nil {
			t.Fatalf("pre-scale %+v", ps)
		}
	})
	t.Run("pre-scale until a time", func(t *testing.T) {
		u, err := scaleUpdate(set("min", "until"), "eastus", 6, 0, "2026-12-05T09:00:00Z", false, 0, 0, 0, now)
		if err != nil || !u.Regions["eastus"].PreScale.Until.Equal(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)) {
			t.Fatalf("update %+v, error %v", u, err)
		}
	})
	t.Run("rules", func(t *testing.T) {
		u, err := scaleUpdate(set("target", "out", "in"), "", 0, 0, "", false, 0.5, 3*time.Second, time.Minute, now)
		if err != nil || *u.Target != 0.5 || *u.ScaleOutAfterSeconds != 3 || *u.ScaleInAfterSeconds != 60 {
			t.Fatalf("update %+v, error %v", u, err)
		}
	})
	bad := []struct {
		name   string
		set    map[string]bool
		region string
		until  string
		want   string
	}{
		{"min without region", set("min"), "", "", "need -region"},
		{"region alone", set(), "eastus", "", "-region needs"},
		{"until without min", set("until"), "eastus", "2h", "-until needs -min"},
		{"until in the past", set("min", "until"), "eastus", "-1h", "future"},
		{"until unreadable", set("min", "until"), "eastus", "tomorrow", "RFC 3339"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scaleUpdate(tt.set, tt.region, 3, 0, tt.until, false, 0, 0, 0, now)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}
