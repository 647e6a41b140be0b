// argocd-health runs the chart's resource health checks with Argo CD's own code: util/lua's
// VM.ExecuteHealthLua from github.com/argoproj/argo-cd/v3 (the function the application controller
// calls for a resource.customizations health script), on gopher-lua, the VM Argo CD embeds. Objects
// are decoded as Argo CD's cluster cache holds them (unstructured.Unstructured: integers as int64).
//
// Input (stdin): {"script": "<lua source>", "objects": [<object>, ...]}.
// Output (stdout): [{"status": "...", "message": "..."} | {"error": "..."}, ...], one per object.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	argolua "github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func run(vm argolua.VM, script string, raw json.RawMessage) result {
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		return result{Error: "decoding the object: " + err.Error()}
	}
	status, err := vm.ExecuteHealthLua(obj, script)
	if err != nil {
		return result{Error: err.Error()}
	}
	if status == nil {
		return result{}
	}
	return result{Status: string(status.Status), Message: status.Message}
}

func main() {
	var in struct {
		Script  string            `json:"script"`
		Objects []json.RawMessage `json:"objects"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health: reading stdin:", err)
		os.Exit(2)
	}
	vm := argolua.VM{} // as for a customization without useOpenLibs (the chart's argocd-cm-health.yaml)
	out := make([]result, 0, len(in.Objects))
	for _, obj := range in.Objects {
		out = append(out, run(vm, in.Script, obj))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}
