package edge_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/edge/edgetest"
)

// FuzzEdgeRawRequest sends raw bytes to the edge's handler through a real
// listener, with a checked stamp behind it and a foreign listener beside.
// Whatever the bytes, the edge answers with parseable HTTP responses or
// closes the connection; it never answers 500 (502, 503 and 504 say a
// stamp failed; 501 and 505 are net/http's own refusals of a transfer
// coding or a protocol version); the foreign listener hears nothing; the
// stamp sees only public paths carrying the edge's credential and is never
// ejected. Seeded with the hostile table and a plain GET, each answered as
// the table says (the GET by the stamp with 200).
func FuzzEdgeRawRequest(f *testing.F) {
	rig := newHostileRig(f, edge.Config{ClientRate: 1e9, ClientBurst: 1 << 30})
	seeds := map[string]edgetest.Case{}
	plain := edgetest.Case{Name: "plain GET", Raw: "GET /api/products HTTP/1.1\r\nHost: " + rig.front + "\r\n\r\n",
		Want: []edgetest.Answer{{Status: http.StatusOK, By: edgetest.ByStamp}}}
	for _, c := range append(edgetest.Hostile(rig.targets()), plain) {
		if len(c.Raw) <= 64<<10 { // the overlong header would only slow the mutator down
			seeds[c.Raw] = c
			f.Add([]byte(c.Raw))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// As many answers as net/http's parser finds requests; with none,
		// every answer until the edge closes the connection.
		max := len(edgetest.Methods(raw))
		got, err := edgetest.Exchange(rig.front, nil, raw, max, time.Second)
		if err != nil {
			t.Fatalf("%v (%s)", err, edgetest.Describe(got))
		}
		for i, g := range got {
			switch {
			case g.Status < 500:
			case g.Status == http.StatusBadGateway, g.Status == http.StatusServiceUnavailable, g.Status == http.StatusGatewayTimeout:
			case (g.Status == http.StatusNotImplemented || g.Status == http.StatusHTTPVersionNotSupported) &&
				g.Header.Get("Content-Type") != "application/problem+json" && g.Header.Get("X-Served-Region") == "":
			default:
				t.Fatalf("answer %d: %d: %s", i+1, g.Status, edgetest.Describe(got))
			}
		}
		if c, ok := seeds[string(raw)]; ok {
			if err := edgetest.Check(c, got); err != nil {
				t.Fatalf("seed %q: %v", c.Name, err)
			}
		}
		rig.foreign.MustBeSilent(t, "this input")
		if _, wrong, _ := rig.stamp.seen(); len(wrong) > 0 {
			t.Fatalf("the stamp saw what it never should: %q", wrong)
		}
		for _, st := range rig.edge.Status()[0].Stamps {
			if st.Ejected {
				t.Fatalf("the stamp was ejected: %+v", st)
			}
		}
	})
}
