package doowexporter

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The configs shipped in collector/ and the repository's root listen on loopback by
// default: an app's collector, a sidecar, an agent or the Lambda extension records usage
// under its api_key for whoever reaches its receivers, so nothing outside the host may.
// Only a gateway's receivers listen on every interface (they take TLS and a token:
// docs/security.md); health checks and the collector's own metrics never do by default.
func TestShippedConfigsListenOnLoopbackUnlessAGatewaysReceivers(t *testing.T) {
	configs := shippedConfigs()
	listeners := 0
	for _, path := range configs {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var config map[string]any
		if err := yaml.Unmarshal(data, &config); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		gateway := strings.HasPrefix(name, "gateway")
		check := func(where, address string) {
			listeners++
			if allInterfaces(address) && !(gateway && strings.HasPrefix(where, "receivers")) {
				t.Errorf("%s: %s listens on every interface by default (%q)", path, where, address)
			}
		}
		for _, section := range []string{"receivers", "extensions"} {
			walk(config[section], section, func(where, key string, value any) {
				if text, ok := value.(string); ok && (key == "endpoint" || key == "listen_address") {
					check(where, defaultOf(text))
				}
			})
		}
		service, _ := config["service"].(map[string]any)
		walk(service["telemetry"], "service::telemetry", func(where, key string, value any) {
			if text, ok := value.(string); ok && key == "host" {
				check(where, net.JoinHostPort(defaultOf(text), "0"))
			}
		})
	}
	if listeners < 10 {
		t.Fatalf("found %d listeners in %d configs: the test reads nothing", listeners, len(configs))
	}
}

// shippedConfigs: the collector configs in collector/ (not the build manifests) and the
// repository's root.
func shippedConfigs() []string {
	root := filepath.Join("..", "..")
	found, _ := filepath.Glob(filepath.Join(root, "collector", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(root, "collector", "*", "*.yaml"))
	var configs []string
	for _, path := range append(found, more...) {
		if !strings.Contains(filepath.Base(path), "manifest") {
			configs = append(configs, path)
		}
	}
	return append(configs, filepath.Join(root, "otel-collector-config.yaml"))
}

// allInterfaces: an address with no host, 0.0.0.0 or ::.
func allInterfaces(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	return host == "" || host == "0.0.0.0" || host == "::"
}

var envReference = regexp.MustCompile(`\$\{env:[A-Za-z_][A-Za-z0-9_]*(?::-([^}]*))?\}`)

// defaultOf is a config value as it reads when no environment variable is set.
func defaultOf(value string) string {
	return envReference.ReplaceAllStringFunc(value, func(ref string) string {
		return envReference.FindStringSubmatch(ref)[1]
	})
}

func walk(node any, where string, visit func(where, key string, value any)) {
	switch n := node.(type) {
	case map[string]any:
		for key, value := range n {
			visit(where+"::"+key, key, value)
			walk(value, where+"::"+key, visit)
		}
	case []any:
		for _, item := range n {
			walk(item, where, visit)
		}
	}
}

// The doow exporter's sending queue never splits a request (no batch max_size): packing
// groups the points of one ScopeMetrics, which must travel whole for a point to keep its
// packed event, and its id, on every send (docs/conversion.md, "Packing").
func TestShippedConfigsNeverSplitTheDoowExportersRequests(t *testing.T) {
	queues := 0
	for _, path := range shippedConfigs() {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var config struct {
			Exporters map[string]struct {
				SendingQueue struct {
					Batch map[string]any `yaml:"batch"`
				} `yaml:"sending_queue"`
			} `yaml:"exporters"`
		}
		if err := yaml.Unmarshal(data, &config); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for name, exporter := range config.Exporters {
			if name != "doow" && !strings.HasPrefix(name, "doow/") {
				continue
			}
			queues++
			if _, splits := exporter.SendingQueue.Batch["max_size"]; splits {
				t.Errorf("%s: %s's sending_queue.batch sets max_size, which splits requests", path, name)
			}
		}
	}
	if queues < 3 {
		t.Fatalf("found %d doow exporters: the test reads nothing", queues)
	}
}
