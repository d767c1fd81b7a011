// Command schemacheck checks Kubernetes objects (the YAML stream of `helm template`, on
// stdin) against the Kubernetes API types: each document is decoded into the Go type of
// its apiVersion and kind (k8s.io/api, and prometheus-operator's for ServiceMonitor) with
// unknown fields rejected, so a misspelled or misplaced field, a wrong type or an
// unparsable quantity fails. A kind it does not know fails too.
//
// It stands in for kubeconform, whose JSON schemas are downloaded from GitHub, which the
// CI machine cannot reach; the Go types come through the Go module proxy.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// newObject returns an empty object of the Go type for apiVersion and kind.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	}
	return nil, false
}

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// documents splits a YAML stream on its `---` lines.
func documents(r io.Reader) ([]string, error) {
	var docs []string
	var current strings.Builder
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "---") {
			docs = append(docs, current.String())
			current.Reset()
			continue
		}
		current.WriteString(line)
		current.WriteByte('\n')
	}
	docs = append(docs, current.String())
	return docs, scanner.Err()
}

func check(doc string) (string, error) {
	raw, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return "", fmt.Errorf("not YAML: %w", err)
	}
	if string(raw) == "null" {
		return "", nil
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", fmt.Errorf("not an object: %w", err)
	}
	what := fmt.Sprintf("%s %s (%s)", h.Kind, h.Metadata.Name, h.APIVersion)
	if h.Metadata.Name == "" {
		return what, errors.New("no metadata.name")
	}
	obj, known := newObject(h.APIVersion, h.Kind)
	if !known {
		return what, errors.New("unknown apiVersion/kind")
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(obj); err != nil {
		return what, err
	}
	return what, nil
}

func main() {
	docs, err := documents(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemacheck: reading stdin:", err)
		os.Exit(2)
	}
	failed, checked := 0, 0
	for _, doc := range docs {
		what, err := check(doc)
		if what == "" && err == nil {
			continue
		}
		checked++
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "schemacheck: %s: %v\n", what, err)
		} else {
			fmt.Printf("ok   %s\n", what)
		}
	}
	fmt.Printf("schemacheck: %d objects, %d invalid\n", checked, failed)
	if failed > 0 || checked == 0 {
		os.Exit(1)
	}
}
