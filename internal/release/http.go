package release

import (
	"log/slog"
	"net/http"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// Routes registers the release routes on mux; the caller puts its
// operations guard in front of them:
//
//	GET  /ops/releases                  the release under way (or the last) and every recorded one
//	POST /ops/releases                  start one (a Request); 201 with its record
//	GET  /ops/releases/{id}             one record
//	POST /ops/releases/{id}/{action}    pause, resume, promote or rollback the release under way ({id} may be "current")
func (c *Controller) Routes(mux *http.ServeMux, log *slog.Logger) {
	h := func(f httpapi.HandlerFunc) http.Handler { return httpapi.Handle(log, f) }
	mux.Handle("GET /ops/releases", h(func(w http.ResponseWriter, r *http.Request) error {
		cur, err := c.Current(r.Context())
		if err != nil {
			return err
		}
		all, err := c.List(r.Context())
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"env": c.cfg.Env, "current": cur, "releases": all})
		return nil
	}))
	mux.Handle("POST /ops/releases", h(func(w http.ResponseWriter, r *http.Request) error {
		var req Request
		if err := httpapi.DecodeJSON(r, &req); err != nil {
			return err
		}
		rec, err := c.Start(r.Context(), req)
		if err != nil {
			return err
		}
		w.Header().Set("Location", "/ops/releases/"+rec.ID)
		httpapi.WriteJSON(w, http.StatusCreated, rec)
		return nil
	}))
	mux.Handle("GET /ops/releases/{id}", h(func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		var rec *Record
		var err error
		if id == "current" {
			if rec, err = c.Current(r.Context()); err == nil && rec == nil {
				err = shop.NotFound("release", "current")
			}
		} else {
			rec, err = c.Get(r.Context(), id)
		}
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, rec)
		return nil
	}))
	mux.Handle("POST /ops/releases/{id}/{action}", h(func(w http.ResponseWriter, r *http.Request) error {
		var body struct {
			By string `json:"by"`
		}
		if r.ContentLength != 0 {
			if err := httpapi.DecodeJSON(r, &body); err != nil {
				return err
			}
		}
		id := r.PathValue("id")
		if id != "current" {
			cur, err := c.Current(r.Context())
			if err != nil {
				return err
			}
			if cur == nil || cur.ID != id || cur.Phase.Final() {
				return conflictNotUnderWay(id)
			}
		}
		rec, err := c.Do(r.Context(), Action(r.PathValue("action")), body.By)
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, rec)
		return nil
	}))
}
