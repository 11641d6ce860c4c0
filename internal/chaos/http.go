package chaos

import (
	"context"
	"net/http"
	"net/url"

	"github.com/contoso/shoes/internal/httpapi"
)

// Routes registers the operations API of faults on mux:
//
//	POST   /ops/chaos       inject: body {"fault","target","duration","params"}; 201, Location and the Active
//	GET    /ops/chaos       {"faults":[...]}: the active faults, then the recently healed, newest first
//	GET    /ops/chaos/{id}  one fault
//	DELETE /ops/chaos/{id}  heal now; 200 and the healed Active
//
// Errors are problem+json. The routes carry no access check of their own:
// the operations server puts them behind its admin check.
func (c *Chaos) Routes(mux *http.ServeMux) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(c.log, f) }
	mux.Handle("POST /ops/chaos", h(c.postFault))
	mux.Handle("GET /ops/chaos", h(c.listFaults))
	mux.Handle("GET /ops/chaos/{id}", h(c.getFault))
	mux.Handle("DELETE /ops/chaos/{id}", h(c.deleteFault))
}

func (c *Chaos) postFault(w http.ResponseWriter, r *http.Request) error {
	var wire specWire
	if err := httpapi.DecodeJSON(r, &wire); err != nil {
		return err
	}
	s, err := wire.spec()
	if err != nil {
		return err
	}
	a, err := c.Inject(r.Context(), s)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/ops/chaos/"+url.PathEscape(a.ID))
	httpapi.WriteJSON(w, http.StatusCreated, a)
	return nil
}

func (c *Chaos) listFaults(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, faultList{Faults: c.List()})
	return nil
}

func (c *Chaos) getFault(w http.ResponseWriter, r *http.Request) error {
	a, err := c.Get(r.PathValue("id"))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (c *Chaos) deleteFault(w http.ResponseWriter, r *http.Request) error {
	// A heal half done is worse than one the client stopped waiting for:
	// it goes on when the client goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), healTimeout)
	defer cancel()
	a, err := c.Heal(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
	return nil
}

// faultList is the body of GET /ops/chaos.
type faultList struct {
	Faults []Active `json:"faults"`
}
