package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/secrets/secretstore"
	"github.com/contoso/shoes/internal/shop"
)

func checkStatus(rep health.Report, name string) health.Status {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c.Status
		}
	}
	return ""
}

// The old system could not scale out while its secret store was down. Here
// a brand-new stamp instance starts from the region's encrypted
// last-known-good copy, becomes ready and confirms orders; the health model
// shows the secret store degraded, not the stamp down.
func TestNewInstanceStartsAndSellsWhileTheSecretStoreIsDown(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	d.SecretStore().SetMode(secretstore.Unavailable)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	url, err := d.AddInstance(ctx, "northeurope")
	if err != nil {
		t.Fatalf("a new instance with the secret store down: %v", err)
	}
	var rep health.Report
	deploytest.Eventually(t, 10*time.Second, func() error {
		res := deploytest.Do(t, http.MethodGet, url+"/health/stamp", "", nil)
		res.JSON(t, &rep)
		if res.Status != http.StatusOK || rep.Status != health.Degraded || checkStatus(rep, "secret-store") != health.Degraded {
			return fmt.Errorf("health %d %s, secret-store %s", res.Status, rep.Status, checkStatus(rep, "secret-store"))
		}
		return nil
	})
	for _, c := range rep.Checks {
		if strings.Contains(c.Detail, d.SecretValue(deploy.SecretPartnerAPIKey)) {
			t.Fatalf("a secret leaked into the health report: %q", c.Detail)
		}
	}
	tok := deploytest.Token(t, d, "frank", false)
	p := shop.SeedCatalog()[6]
	res, o := placeOrder(t, url, tok, "k1", map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}})
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST to the new instance = %d %s", res.Status, res.Body)
	}
	// Whichever region's processor takes it, it signs with cached secrets.
	final := waitFinal(t, d, map[string]string{o.ID: tok}, 30*time.Second)
	if final[o.ID].Status != shop.OrderConfirmed {
		t.Fatalf("order = %+v", final[o.ID])
	}
	if d.Partner().Rejected() != 0 {
		t.Fatalf("the partner rejected %d notifications", d.Partner().Rejected())
	}
}

func TestRotatedSecretIsUsedWithoutARestart(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{SecretRefresh: 200 * time.Millisecond}, regions3...)
	if err := d.RotateSecret(deploy.SecretPartnerSigningKey); err != nil {
		t.Fatal(err)
	}
	if err := d.RotateSecret(deploy.SecretPartnerAPIKey); err != nil {
		t.Fatal(err)
	}
	tok := deploytest.Token(t, d, "gina", false)
	p := shop.SeedCatalog()[8]
	tokens := map[string]string{}
	for i, region := range regions3 {
		res, o := placeOrder(t, d.Regions()[region], tok, fmt.Sprint("rot-", i), map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[i]), Quantity: 1}}})
		if res.Status != http.StatusAccepted {
			t.Fatalf("POST = %d %s", res.Status, res.Body)
		}
		tokens[o.ID] = tok
	}
	final := waitFinal(t, d, tokens, 30*time.Second)
	for id, o := range final {
		if o.Status != shop.OrderConfirmed {
			t.Fatalf("order %s = %s after a rotation", id, o.Status)
		}
	}
}
