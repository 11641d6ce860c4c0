// Package autoscale is the autoscaler: it adds stamp instances to a region
// before a spike hurts and removes them without losing a request.
//
// Every evaluation (once a second) it reads each region's instances and
// the load they report (requests in flight against their capacity, and
// what they shed), recommends a count with the rule Kubernetes' HPA uses
// (ceil(instances × utilisation / target)), damps it (Policy: out fast,
// after a short window above the target; in slowly, one instance at a
// time, after a stabilisation window in which no evaluation wanted more),
// bounds it by the region's min and max (and an operator's pre-scale for a
// known launch), and applies it through a release.Launcher: a new
// instance takes traffic only once the edge sees it ready; one removed is
// drained first. Every decision is recorded with its inputs.
//
// It acts on load only. An instance lost to a fault is the deployment's to
// restore (a region's revive, a zone's restore); the scaler neither
// replaces it nor counts its absence as a reason to scale, except through
// the load the survivors then carry. While a release is under way it
// holds: the release agent owns the instance counts until the release
// ends.
package autoscale
