// argocd-health runs a resource health check the way Argo CD's util/lua does (v3.5, util/lua/lua.go:
// runLua and ExecuteHealthLua), on gopher-lua, the Lua VM Argo CD embeds. Argo CD's own package cannot
// be built from its module here (its gitops-engine requirement is only a replace to a folder of its
// repository; see tests/unit/charts/test_health_gopher_lua.py), so this repeats its setup:
//   - a state with no libraries but package, base, table and a safe os (here os.time only; Argo CD's
//     also has os.date, which the chart's scripts do not use): no string or math library unless the resource's useOpenLibs is set, which the chart's
//     argocd-cm-health.yaml does not set;
//   - the object as the global `obj`, decoded as Kubernetes' unstructured objects are (integers as
//     int64, arrays as 1-based tables, maps as hash tables), a one-second deadline;
//   - the returned table's status must be a known health code, else Unknown.
//
// Input (stdin): {"script": "<lua source>", "objects": [<object>, ...]}.
// Output (stdout): [{"status": "...", "message": "..."} | {"error": "..."}, ...], one per object.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

var healthCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Healthy": true, "Suspended": true, "Degraded": true, "Missing": true,
}

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func decode(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return lua.LNumber(i)
		}
		f, _ := v.Float64()
		return lua.LNumber(f)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decode(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decode(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func safeOs(l *lua.LState) int {
	mod := l.RegisterModule(lua.OsLibName, map[string]lua.LGFunction{
		"time": func(l *lua.LState) int { l.Push(lua.LNumber(time.Now().Unix())); return 1 },
	})
	l.Push(mod)
	return 1
}

func run(script string, obj any) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, safeOs}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return result{Error: err.Error()}
		}
	}
	l.PreloadModule(lua.OsLibName, safeOs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return result{}
	case lua.LTTable:
		tbl := ret.(*lua.LTable)
		status, message := tbl.RawGetString("status"), tbl.RawGetString("message")
		out := result{}
		if s, ok := status.(lua.LString); ok {
			out.Status = string(s)
		}
		if m, ok := message.(lua.LString); ok {
			out.Message = string(m)
		} else if message != lua.LNil {
			return result{Error: fmt.Sprintf("message is a %s, not a string", message.Type())}
		}
		if !healthCodes[out.Status] {
			return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
		}
		return out
	}
	return result{Error: fmt.Sprintf("expect table output from Lua script, not %s", ret.Type())}
}

func main() {
	var in struct {
		Script  string `json:"script"`
		Objects []any  `json:"objects"`
	}
	dec := json.NewDecoder(os.Stdin)
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health: reading stdin:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(in.Objects))
	for _, obj := range in.Objects {
		out = append(out, run(in.Script, obj))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}
