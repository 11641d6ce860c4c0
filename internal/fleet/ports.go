package fleet

import (
	"fmt"

	"github.com/contoso/shoes/internal/store"
)

// portSet hands out free loopback ports, each once: store.FreePort picks
// them below the kernel's ephemeral range, so no outgoing connection holds
// one when a process restarts on it.
type portSet struct{ taken map[int]bool }

func newPortSet() *portSet { return &portSet{taken: map[int]bool{}} }

func (s *portSet) take() (int, error) {
	for range 100 {
		p, err := store.FreePort()
		if err != nil {
			return 0, err
		}
		if !s.taken[p] {
			s.taken[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port left after %d taken", len(s.taken))
}
