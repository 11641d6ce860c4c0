package fleet

import (
	"fmt"
	"strings"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/store"
)

// natsServer is what one region's nats-server configuration says.
type natsServer struct {
	region                   string
	storeDir                 string
	client, cluster, monitor int      // loopback ports
	routes                   []string // host:port of the links to every other region's cluster port
	routePassword            string
	users                    []store.User
}

// config is the server's configuration file: the settings the embedded
// servers of `up` get (internal/store/node.go) and the recipe in
// docs/operations.md gives, in the server's own syntax.
func (n natsServer) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\n", n.region)
	fmt.Fprintf(&b, "listen: \"127.0.0.1:%d\"\n", n.client)
	fmt.Fprintf(&b, "http: \"127.0.0.1:%d\"\n", n.monitor)
	fmt.Fprintf(&b, "server_tags: [%q]\n", "region:"+n.region)
	b.WriteString("ping_interval: \"2s\"\nping_max: 3\n")
	b.WriteString("lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"1s\"\n")
	b.WriteString(store.ServerConfig(n.users))
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  unique_tag: \"region:\"\n  sync_interval: always\n  max_file_store: %d\n}\n",
		n.storeDir, store.DefaultMaxStore)
	if len(n.routes) == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: \"127.0.0.1:%d\"\n", store.ClusterName, n.cluster)
	// Clients stay on their region's server, and servers dial only the
	// configured routes (through the links), never a gossiped address.
	b.WriteString("  no_advertise: true\n  advertise: \"127.0.0.1:1\"\n")
	b.WriteString("  ping_interval: \"1s\"\n  ping_max: 2\n")
	fmt.Fprintf(&b, "  authorization { user: %q, password: %q }\n  routes: [\n", deploy.RouteUser, n.routePassword)
	for _, addr := range n.routes {
		fmt.Fprintf(&b, "    %q\n", store.RouteURL(addr, deploy.RouteUser, n.routePassword).String())
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}
