package store_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/store"
)

// A watch waits for a stream's replicas to be current before it trusts
// the leader's last sequence, except for replicas that serve nobody: one
// the engine calls offline, and one its leader has not heard from for
// seconds or at all (a server that died with its region, long before the
// engine calls it offline). (Mutation tried: ignoring Active; the "lost"
// and "never heard" cases went red. Before, a stamp started during a
// region outage waited out the whole 10 s bound before its read model
// loaded: the new leader had never heard from the dead replica.)
func TestReplicasSettled(t *testing.T) {
	peer := func(current, offline bool, active time.Duration) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: "n", Current: current, Offline: offline, Active: active}
	}
	for _, tc := range []struct {
		name string
		ci   *jetstream.ClusterInfo
		want bool
	}{
		{"not clustered", nil, true},
		{"no leader", &jetstream.ClusterInfo{Replicas: []*jetstream.PeerInfo{peer(true, false, 0)}}, false},
		{"every replica current", &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{peer(true, false, 100*time.Millisecond), peer(true, false, 0)}}, true},
		{"one catching up", &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{peer(true, false, 0), peer(false, false, 200*time.Millisecond)}}, false},
		{"one offline", &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{peer(true, false, 0), peer(false, true, 0)}}, true},
		{"one lost with its region", &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{peer(true, false, 0), peer(false, false, 5*time.Second)}}, true},
		{"one never heard by this leader", &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{peer(true, false, 0), peer(false, false, 0)}}, true},
		{"one unheard for a moment", &jetstream.ClusterInfo{Leader: "a", Replicas: []*jetstream.PeerInfo{peer(false, false, 2*time.Second)}}, false},
	} {
		if got := store.ReplicasSettled(tc.ci); got != tc.want {
			t.Errorf("%s: settled = %t, want %t", tc.name, got, tc.want)
		}
	}
}
