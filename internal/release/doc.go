// Package release upgrades a running deployment without downtime.
//
// A release starts stamps of the new version in every region next to the
// old ones, waits until each is ready and prewarmed, and shifts each
// region's traffic between the two versions in steps (10 % → 50 % → 100 %
// by default, region by region in a declared order). Every step is gated:
// the new version's stamps are compared with the old ones over the step's
// window — health state, error ratio and p99 of every user flow — and the
// step passes only after a minimum hold and once enough requests were seen
// to judge. A gate that fails rolls the release back at once: all traffic
// returns to the old stamps within seconds and the new ones are drained
// and stopped. A release that passes every step ends by draining and
// stopping the old stamps.
//
// The package holds the decisions and nothing else:
//
//   - Controller runs in the operations plane. It keeps each release as a
//     Record in the replicated store (who, when, which digest, every step
//     with its gate readings and verdict), writes the traffic table every
//     point of presence follows, and declares how many instances of each
//     version every region should run (Record.Desired).
//   - Agent runs wherever stamps are started (in `contoso up`, in the
//     supervisor of `up --processes`, in `contoso host` on each host of a
//     region): it reads the current record and starts or drains instances
//     until what runs matches what is desired, or, on a host that carries
//     a fixed part of a region, its own share of it (AgentConfig.Instances).
//   - Judge is the gate, a pure function of two Readings.
//
// What it reads and writes comes in through small interfaces (Records,
// Observer, Launcher), so the same controller runs in one process or
// against parts on many machines.
package release
