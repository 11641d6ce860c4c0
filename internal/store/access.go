package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	// status, and writes only the releases bucket (its release
	// controller's records and the traffic table).
	RoleOps Role = "ops"
)

// Roles lists every role, in a stable order.
var Roles = []Role{RoleAdmin, RoleStamp, RoleEdge, RoleOps}

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
			// Data: every bucket's keys and the two queues' subjects.
			"$KV.>", "orders.>", "writes.>",
		})
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: allow, Deny: []string{
				// The shared processing consumers outlive any stamp.
				jsAPI + "CONSUMER.DELETE." + StreamOrders + "." + ConsumerOrders,
				jsAPI + "CONSUMER.DELETE." + StreamWrites + "." + ConsumerWrites,
			}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case RoleEdge:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: slices.Concat([]string{
				jsAPI + "INFO",
				jsAPI + "STREAM.INFO." + registry,
				jsAPI + "STREAM.MSG.GET." + registry,
				jsAPI + "DIRECT.GET." + registry, jsAPI + "DIRECT.GET." + registry + ".>",
				jsAPI + "STREAM.INFO." + releases,
				jsAPI + "STREAM.MSG.GET." + releases,
				jsAPI + "DIRECT.GET." + releases, jsAPI + "DIRECT.GET." + releases + ".>",
			}, watchAPI(registry), watchAPI(releases), []string{popStatus})},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox}},
		}
	case RoleOps:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: slices.Concat(readAPI, watchAPI(registry), watchAPI(releases),
				// The release controller's records and the traffic table.
				[]string{"$KV." + BucketReleases + ".>"})},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox, popStatus}},
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
