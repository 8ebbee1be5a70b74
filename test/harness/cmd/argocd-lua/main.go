// argocd-lua evaluates an Argo CD health script the way Argo CD does: in
// gopher-lua (github.com/yuin/gopher-lua), with only the libraries Argo CD's
// util/lua opens for a custom health check from argocd-cm (package, base,
// table, and a "safe" os of time() and date() opened as Argo CD opens it:
// no global os, require("os") gives those two; no string or math library),
// the object decoded as Argo CD decodes it (JSON null is nil, numbers are
// Lua numbers), a one-second deadline, and the returned table read back
// through JSON with Argo CD's check of the status code.
//
// Input on stdin: {"script": "...", "objects": [{...}, ...]}. Output: one
// JSON line per object, {"status": "...", "message": "..."} or {"error": "..."}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type input struct {
	Script  string           `json:"script"`
	Objects []map[string]any `json:"objects"`
}

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// The health status codes Argo CD accepts from a script (gitops-engine's health package).
var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

var safeOs = map[string]lua.LGFunction{
	"time": func(L *lua.LState) int { L.Push(lua.LNumber(time.Now().Unix())); return 1 },
	"date": func(L *lua.LState) int { L.Push(lua.LString(time.Now().UTC().Format(time.RFC3339))); return 1 },
}

func decode(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return lua.LString(x.String())
		}
		return lua.LNumber(f)
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(decode(L, item))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), decode(L, item))
		}
		return t
	}
	return lua.LNil
}

func health(script string, obj map[string]any) result {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, func(L *lua.LState) int { L.Push(L.RegisterModule(lua.TabLibName, safeOs)); return 1 }},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return result{Error: fmt.Sprintf("opening %s: %v", lib.name, err)}
		}
	}
	L.PreloadModule(lua.OsLibName, func(L *lua.LState) int { L.Push(L.SetFuncs(L.NewTable(), safeOs)); return 1 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", decode(L, obj))
	if err := L.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return result{Error: fmt.Sprintf("expect table output from Lua script, not %s", L.Get(-1).Type())}
	}
	var hs result
	if s, ok := ret.RawGetString("status").(lua.LString); ok {
		hs.Status = string(s)
	}
	if m, ok := ret.RawGetString("message").(lua.LString); ok {
		hs.Message = string(m)
	}
	if !validStatus[hs.Status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return hs
}

func main() {
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	dec.UseNumber()
	var in input
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua: reading the input JSON:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, obj := range in.Objects {
		if err := enc.Encode(health(in.Script, obj)); err != nil {
			fmt.Fprintln(os.Stderr, "argocd-lua:", err)
			os.Exit(2)
		}
	}
}
