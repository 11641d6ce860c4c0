package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Role is what one user of the store servers may do. Every part of the
// system connects as its own user (an nkey), with the least permissions its
// work needs; the servers refuse a client without credentials.
type Role string

const (
	// RoleAdmin provisions and reconfigures assets: operators' tools and
	// the deployment's set-up step. No limits.
	RoleAdmin Role = "admin"
	// RoleStamp is a stamp instance: it reads and writes the system's data,
	// shares the work queues and keeps its registry entry, but cannot
	// create, reconfigure, purge or delete an asset, delete a message, or
	// delete the shared processing consumers.
	RoleStamp Role = "stamp"
	// RoleEdge reads the stamps registry and the releases bucket (the
	// traffic table) and publishes its POPs' status, nothing else: it
	// cannot write a registry entry or the traffic table, so it cannot
	// announce or remove a stamp nor shift traffic.
	RoleEdge Role = "edge"
	// RoleOps is the operations plane: it reads asset and consumer state,
	// the heads of the work queues and the registry, hears the POPs'
	// status, writes only the releases bucket (its release controller's
	// records and the traffic table), and sends the autoscaler's starts
	// and drains to the agents (LaunchSubject).
	RoleOps Role = "ops"
	// RoleAgent is a supervisor or host that starts and drains stamp
	// instances: it reads the registry and the releases bucket, as the
	// edge does, and takes the autoscaler's starts and drains, answering
	// each to its sender only; it writes nothing.
	RoleAgent Role = "agent"
)

// Roles lists every role, in a stable order.
var Roles = []Role{RoleAdmin, RoleStamp, RoleEdge, RoleOps, RoleAgent}

// LaunchSubject prefixes the subjects of the autoscaler's starts and
// drains: LaunchSubject.start.<region> and LaunchSubject.stop.<region>.
const LaunchSubject = "contoso.launch"

// launchReplyTTL bounds how long an agent may take to answer a start or a
// drain: an instance's start and its drain both end well within it.
const launchReplyTTL = 10 * time.Minute

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// The subjects of the JetStream API and of the data, as the permissions
// below name them.
const (
	jsAPI = "$JS.API."
	inbox = "_INBOX.>"
	// popStatus is where points of presence publish their status for the
	// operations plane (edge.StatusSubject).
	popStatus = "contoso.ops.pop.>"
)

// readAPI is what looking at assets takes: account, stream and consumer
// information and message reads (leader and direct).
var readAPI = []string{
	jsAPI + "INFO",
	jsAPI + "STREAM.NAMES", jsAPI + "STREAM.LIST",
	jsAPI + "STREAM.INFO.*",
	jsAPI + "STREAM.MSG.GET.*",
	jsAPI + "DIRECT.GET.>",
	jsAPI + "CONSUMER.NAMES.*", jsAPI + "CONSUMER.LIST.*",
	jsAPI + "CONSUMER.INFO.*.*",
}

// watchAPI is what a key-value watch takes on stream: an ordered consumer
// created, read, replaced and flow-controlled.
func watchAPI(stream string) []string {
	return []string{
		jsAPI + "CONSUMER.CREATE." + stream, jsAPI + "CONSUMER.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
		"$JS.FC." + stream + ".>",
	}
}

// readRegistryAndReleases is what reading the stamps registry and the
// releases bucket takes: their keys, read or watched.
func readRegistryAndReleases() []string {
	registry, releases := "KV_"+BucketRegistry, "KV_"+BucketReleases
	return slices.Concat([]string{
		jsAPI + "INFO",
		jsAPI + "STREAM.INFO." + registry,
		jsAPI + "STREAM.MSG.GET." + registry,
		jsAPI + "DIRECT.GET." + registry, jsAPI + "DIRECT.GET." + registry + ".>",
		jsAPI + "STREAM.INFO." + releases,
		jsAPI + "STREAM.MSG.GET." + releases,
		jsAPI + "DIRECT.GET." + releases, jsAPI + "DIRECT.GET." + releases + ".>",
	}, watchAPI(registry), watchAPI(releases))
}

// Permissions are role's subject permissions on the store servers; nil for
// RoleAdmin (everything).
func (r Role) Permissions() *server.Permissions {
	registry, releases := "KV_"+BucketRegistry, "KV_"+BucketReleases
	switch r {
	case RoleStamp:
		allow := slices.Concat(readAPI, []string{
			// Consumers: the read models' watches, the canaries, the
			// shared processors' pulls and acknowledgements.
			jsAPI + "CONSUMER.CREATE.>", jsAPI + "CONSUMER.DURABLE.CREATE.*.*",
			jsAPI + "CONSUMER.DELETE.*.*", jsAPI + "CONSUMER.MSG.NEXT.*.*",
			"$JS.ACK.>", "$JS.FC.>",
			// Data: every bucket's keys and the queues' subjects.
			"$KV.>", "orders.>", "writes.>", subjectIntake + ".>",
			// Keeping its region's intake stream led from the region
			// (KeepIntakeLeader). Subject permissions match whole tokens,
			// so this allows asking any stream's leader to step down:
			// leadership moves, nothing stored changes.
			jsAPI + "STREAM.LEADER.STEPDOWN.*",
		})
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: allow, Deny: []string{
				// The shared processing consumers outlive any stamp:
				// the order processors' on ORDERS and every intake stream.
				jsAPI + "CONSUMER.DELETE.*." + ConsumerOrders,
				jsAPI + "CONSUMER.DELETE." + StreamWrites + "." + ConsumerWrites,
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case RoleEdge:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: slices.Concat(readRegistryAndReleases(), []string{popStatus})},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case RoleOps:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: slices.Concat(readAPI, watchAPI(registry), watchAPI(releases),
				// The release controller's records and the traffic table;
				// the autoscaler's starts and drains.
				[]string{"$KV." + BucketReleases + ".>", LaunchSubject + ".>"})},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox, popStatus}},
		}
	case RoleAgent:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: readRegistryAndReleases()},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox, LaunchSubject + ".>"}},
			// Its answers go to the sender's reply subject and nowhere
			// else: one answer each.
			Response: &server.ResponsePermission{MaxMsgs: 1, Expires: launchReplyTTL},
		}
	}
	return nil
}

// User is one store user: its role and its nkey's public key. The servers
// hold only public keys; each part holds its own seed.
type User struct {
	Role      Role
	PublicKey string // "U..."
}

// NewUserSeed makes a new user nkey and returns its seed ("SU...").
func NewUserSeed() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("new store user: %w", err)
	}
	return kp.Seed()
}

// PublicKey is the public key of a user seed.
func PublicKey(seed []byte) (string, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", fmt.Errorf("store user seed: %w", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", errors.New("store user seed: not a user nkey")
	}
	return pub, nil
}

// nkeyUsers is the servers' view of users.
func nkeyUsers(users []User) []*server.NkeyUser {
	out := make([]*server.NkeyUser, 0, len(users))
	for _, u := range users {
		out = append(out, &server.NkeyUser{Nkey: u.PublicKey, Permissions: u.Role.Permissions()})
	}
	return out
}

// Credentials say how a client authenticates to the store servers and
// whether it speaks TLS to them.
type Credentials struct {
	// Seed is the user's nkey seed; nil: none sent (servers without users).
	Seed []byte
	// TLS is the client's TLS configuration (its RootCAs trust the
	// servers' CA); nil: plain TCP, or the system roots for a tls:// URL.
	TLS *tls.Config
}

// Options are the connection options that present c.
func (c Credentials) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if len(c.Seed) > 0 {
		kp, err := nkeys.FromSeed(c.Seed)
		if err != nil {
			return nil, fmt.Errorf("store credentials: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("store credentials: %w", err)
		}
		opts = append(opts, nats.Nkey(pub, kp.Sign))
	}
	if c.TLS != nil {
		opts = append(opts, nats.Secure(c.TLS.Clone()))
	}
	return opts, nil
}

// ServerConfig renders the authorization block of a nats-server
// configuration file for users: the same permissions the embedded servers
// enforce, for servers run as their own processes.
func ServerConfig(users []User) string {
	var b strings.Builder
	b.WriteString("authorization {\n  users: [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    # %s\n    {nkey: %q", u.Role, u.PublicKey)
		if p := u.Role.Permissions(); p != nil {
			b.WriteString(", permissions: {\n")
			writeSubjects(&b, "publish", p.Publish)
			writeSubjects(&b, "subscribe", p.Subscribe)
			if p.Response != nil {
				fmt.Fprintf(&b, "      allow_responses: {max: %d, expires: %q}\n", p.Response.MaxMsgs, p.Response.Expires.String())
			}
			b.WriteString("    }")
		}
		b.WriteString("}\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

func writeSubjects(b *strings.Builder, name string, sp *server.SubjectPermission) {
	if sp == nil {
		return
	}
	quote := func(list []string) string {
		q := make([]string, len(list))
		for i, s := range list {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	fmt.Fprintf(b, "      %s: {allow: %s", name, quote(sp.Allow))
	if len(sp.Deny) > 0 {
		fmt.Fprintf(b, ", deny: %s", quote(sp.Deny))
	}
	b.WriteString("}\n")
}
