package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/secrets/secretstore"
	"github.com/contoso/shoes/internal/shop"
)

func checkStatus(rep health.Report, name string) health.Status {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c.Status
		}
	}
	return health.Unknown
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

// The secret store answers only the deployment's token, which `up` keeps in
// <data>/config/secretstore.token (mode 0600): without it, or with another,
// 401 problem+json; with it, 200. The stamp, which carries it, loads its
// secrets from the store and confirms an order with them.
func TestSecretStoreAnswersOnlyTheDeploymentToken(t *testing.T) {
	dataDir := t.TempDir()
	d := deploytest.MustStart(t, deploytest.Options{DataDir: dataDir}, "westeurope")
	tokenPath := filepath.Join(dataDir, "config", "secretstore.token")
	raw, err := keyfile.Read(tokenPath, 4<<10)
	if err != nil {
		t.Fatalf("the deployment's secret-store token: %v", err)
	}
	if fi, err := os.Stat(tokenPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", tokenPath, fi.Mode().Perm(), err)
	}
	token := strings.TrimSpace(string(raw))
	store := d.ServiceURLs()["secrets"]
	apiKey := d.SecretValue(deploy.SecretPartnerAPIKey)

	for name, tok := range map[string]string{"no token": "", "a wrong token": token[:len(token)-1] + "x", "the edge credential": d.EdgeCredential()} {
		for _, path := range []string{"/v1/secrets/partner-api-key", "/v1/secrets?names=partner-api-key,partner-signing-key", "/v1/status"} {
			res := deploytest.Do(t, http.MethodGet, store+path, tok, nil)
			if res.Status != http.StatusUnauthorized || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("GET %s with %s = %d %s %s; want 401 problem+json", path, name, res.Status, res.Header.Get("Content-Type"), res.Body)
			}
			if strings.Contains(string(res.Body), apiKey) {
				t.Fatalf("GET %s with %s leaked the secret", path, name)
			}
		}
		res := deploytest.Do(t, http.MethodPut, store+"/v1/status", tok, map[string]string{"mode": "unavailable"})
		if res.Status != http.StatusUnauthorized || d.SecretStore().Mode() != secretstore.Up {
			t.Errorf("PUT /v1/status with %s = %d, mode %s; want 401 and the store up", name, res.Status, d.SecretStore().Mode())
		}
	}
	res := deploytest.Do(t, http.MethodGet, store+"/v1/secrets/partner-api-key", token, nil)
	var secret struct{ Value string }
	if res.Status != http.StatusOK {
		t.Fatalf("GET a secret with the token = %d %s", res.Status, res.Body)
	}
	res.JSON(t, &secret)
	if secret.Value != apiKey {
		t.Fatal("the store answered another value than the deployment's")
	}

	url := d.Regions()["westeurope"]
	deploytest.Eventually(t, 10*time.Second, func() error {
		var rep health.Report
		deploytest.Do(t, http.MethodGet, url+"/health/stamp", "", nil).JSON(t, &rep)
		for _, c := range rep.Checks {
			if c.Name == "secret-store" && c.Status == health.Healthy && strings.HasPrefix(c.Detail, "2 secrets from the store") {
				return nil
			}
		}
		return fmt.Errorf("secret-store check: %+v", rep.Checks)
	})
	tok := deploytest.Token(t, d, "hana", false)
	p := shop.SeedCatalog()[3]
	res, o := placeOrder(t, url, tok, "tok-1", map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}})
	if res.Status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", res.Status, res.Body)
	}
	if final := waitFinal(t, d, map[string]string{o.ID: tok}, 30*time.Second); final[o.ID].Status != shop.OrderConfirmed {
		t.Fatalf("order = %+v", final[o.ID])
	}
	if d.Partner().Rejected() != 0 {
		t.Fatalf("the partner rejected %d notifications", d.Partner().Rejected())
	}
}

// lockedBuffer is a log destination many goroutines write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A region's last-known-good file replaced by another region's (same data
// directory, so the same key) is refused while the secret store is down: a
// new instance does not start from it, and the log says which file and
// why. Once the store answers, a new instance replaces the file with one
// of its own region, from which the next instance starts while the store is
// down again.
func TestLKGFileCopiedFromAnotherRegionIsRefused(t *testing.T) {
	dataDir := t.TempDir()
	// eastus's stamp writes its file, sealed for eastus.
	first, err := deploytest.Start(t, deploytest.Options{DataDir: dataDir}, "eastus")
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	eastus, err := keyfile.Read(filepath.Join(dataDir, "stamps", "eastus", "secrets.lkg"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}

	var logs lockedBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	d, err := deploy.Start(ctx, deploy.Config{
		Regions: []string{"westeurope"}, DataDir: dataDir, Network: netsim.Config{Off: true},
		ProbeInterval: 200 * time.Millisecond, SecretRefresh: 200 * time.Millisecond, OpsTrustLoopback: true,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close deployment: %v", err)
		}
	})
	lkgPath := filepath.Join(dataDir, "stamps", "westeurope", "secrets.lkg")
	if err := keyfile.Write(lkgPath, eastus); err != nil {
		t.Fatal(err)
	}

	d.SecretStore().SetMode(secretstore.Unavailable)
	_, err = d.AddInstance(ctx, "westeurope")
	if err == nil || !strings.Contains(err.Error(), `sealed for region "eastus", this stamp serves "westeurope"`) {
		t.Fatalf("a new instance with the store down and eastus's file = %v; want a refusal", err)
	}
	if n := len(d.StampHosts()); n != 1 {
		t.Fatalf("%d stamp instances run, want only the first", n)
	}
	var refusal map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(fmt.Sprint(rec["msg"]), "refusing the last-known-good file") {
			refusal = rec
		}
	}
	if refusal == nil || refusal["file"] != lkgPath || refusal["region"] != "westeurope" ||
		!strings.Contains(fmt.Sprint(refusal["msg"]), "not sealed for this region") ||
		!strings.Contains(fmt.Sprint(refusal["msg"]), "cannot start from it while the secret store is down") ||
		!strings.Contains(fmt.Sprint(refusal["error"]), `sealed for region "eastus"`) {
		t.Fatalf("no clear log line about the refused file: %v", refusal)
	}
	if strings.Contains(logs.String(), d.SecretValue(deploy.SecretPartnerAPIKey)) {
		t.Fatal("a secret value reached the logs")
	}
	if now, _ := os.ReadFile(lkgPath); !bytes.Equal(now, eastus) {
		t.Fatal("the refused file changed while the store was down")
	}

	// The store answers: a new instance loads from it and replaces the file.
	d.SecretStore().SetMode(secretstore.Up)
	if _, err := d.AddInstance(ctx, "westeurope"); err != nil {
		t.Fatalf("a new instance with the store up: %v", err)
	}
	if now, _ := os.ReadFile(lkgPath); bytes.Equal(now, eastus) {
		t.Fatal("the refused file was not replaced after a successful fetch")
	}
	d.SecretStore().SetMode(secretstore.Unavailable)
	url, err := d.AddInstance(ctx, "westeurope")
	if err != nil {
		t.Fatalf("a new instance with the store down and the replaced file: %v", err)
	}
	deploytest.Eventually(t, 10*time.Second, func() error {
		var rep health.Report
		deploytest.Do(t, http.MethodGet, url+"/health/stamp", "", nil).JSON(t, &rep)
		for _, c := range rep.Checks {
			if c.Name == "secret-store" && c.Status == health.Degraded && strings.Contains(c.Detail, "serving last-known-good") {
				return nil
			}
		}
		return fmt.Errorf("secret-store check: %+v", rep.Checks)
	})
}
