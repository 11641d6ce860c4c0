package netsim

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// linkToxicType is the toxiproxy toxic type of linkToxic.
const linkToxicType = "netsim_link"

// registerToxic registers linkToxic with toxiproxy's global toxic registry,
// once per process, when the first Network is made.
var registerToxic = sync.OnceFunc(func() {
	toxics.Register(linkToxicType, new(linkToxic))
})

// linkToxic is a toxiproxy toxic that applies a Link's current faults to one
// direction of one connection: latency ± jitter per chunk, and while the link
// is cut, a black hole.
//
// It replaces toxiproxy's own "latency" and "timeout" toxics, which do not fit:
//   - UpdateToxicJson decodes new attributes into the toxic that running
//     connections are reading, a data race under -race when bytes flow while
//     latency changes;
//   - the "timeout" toxic with timeout 0 drops bytes but passes end of stream
//     on, so an upstream closing its end during a cut is seen by the client,
//     which no partition would allow.
//
// Instead, the toxic reads the link's state (under the link's mutex) for
// each chunk, so faults change without touching toxiproxy's chains.
type linkToxic struct {
	link *Link // set before the proxy starts, never changed
}

// connState is linkToxic's per-connection, per-direction state.
type connState struct {
	healed <-chan struct{} // closed by the first Heal after the connection started
}

// NewState implements toxics.StatefulToxic; toxiproxy calls it when a
// connection starts.
func (t *linkToxic) NewState() any {
	if t.link == nil {
		return &connState{}
	}
	return &connState{healed: t.link.healSignal()}
}

// Pipe implements toxics.Toxic.
func (t *linkToxic) Pipe(stub *toxics.ToxicStub) {
	l := t.link
	if l == nil { // not created by addChannel: pass through
		new(toxics.NoopToxic).Pipe(stub)
		return
	}
	var healed <-chan struct{}
	if st, ok := stub.State.(*connState); ok {
		healed = st.healed
	}
	input := stub.Input
	for {
		select {
		case <-stub.Interrupt:
			return
		case <-l.gone:
			closeStub(stub, input)
			return
		case <-healed:
			closeStub(stub, input)
			return
		case c := <-input:
			if c == nil { // the source closed its end
				if l.isCut() {
					// A partition hides the close; the connection ends on
					// Heal or when the link stops.
					input = nil
					continue
				}
				stub.Close()
				return
			}
			switch t.deliver(stub, healed, c) {
			case delivered:
			case interrupted:
				return
			case closing:
				closeStub(stub, input)
				return
			}
		}
	}
}

// outcome is what deliver did with a chunk.
type outcome int

const (
	delivered   outcome = iota // passed on or dropped; go on
	interrupted                // passed on; toxiproxy is rebuilding the chain, return
	closing                    // healed or link gone: close the connection
)

// deliver passes c on after the link's latency, or drops it if the link is
// cut by then.
func (t *linkToxic) deliver(stub *toxics.ToxicStub, healed <-chan struct{}, c *stream.StreamChunk) outcome {
	l := t.link
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var (
		d        time.Duration   // this chunk's delay
		rolledAt <-chan struct{} // the fault generation d was drawn for
	)
	for {
		f := l.faults()
		if f.cut {
			return delivered // dropped
		}
		if f.changed != rolledAt { // draw the jitter once per chunk and fault change
			d, rolledAt = delay(f.latency, f.jitter), f.changed
		}
		wait := d - time.Since(c.Timestamp)
		if wait <= 0 {
			select {
			case stub.Output <- c:
				return delivered
			case <-f.changed: // maybe cut while the receiver was slow
				continue
			case <-stub.Interrupt:
				stub.Output <- c // don't drop data when the chain is rebuilt
				return interrupted
			case <-l.gone:
				return closing
			case <-healed:
				return closing
			}
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
			// Re-check the faults, then send.
		case <-f.changed:
			// Re-time with the new latency.
		case <-stub.Interrupt:
			stub.Output <- c
			return interrupted
		case <-l.gone:
			return closing
		case <-healed:
			return closing
		}
	}
}

// closeStub closes the stub's output, which makes toxiproxy close the
// destination connection, and then drains input (unless it already ended)
// so that toxiproxy's reader of the source connection, which may be blocked
// handing over a chunk, can see the source close and exit.
func closeStub(stub *toxics.ToxicStub, input <-chan *stream.StreamChunk) {
	stub.Close()
	if input != nil {
		go func() {
			for c := range input {
				if c == nil {
					return
				}
			}
		}()
	}
}

// delay returns latency ± a uniform random amount up to jitter, at least 0.
func delay(latency, jitter time.Duration) time.Duration {
	d := latency
	if jitter > 0 {
		d += time.Duration(rand.Int64N(2*int64(jitter)+1)) - jitter
	}
	return max(d, 0)
}

// GetBufferSize makes the toxic buffered, as toxiproxy's own latency toxic
// is: chunks queue (and are timestamped) as they arrive while earlier ones
// wait out their latency. Unbuffered, a link would carry one chunk per
// latency period per direction, a bandwidth limit no real link has.
func (t *linkToxic) GetBufferSize() int { return 1024 }
