package engine

import "testing"

// BenchmarkPrepareRequest is the engine's work on a request before any
// sandbox: validating and defaulting it (normalize), building the argv
// (command; TypeScript is compiled in-process by esbuild) and the environment.
// Run: go test -run '^$' -bench . ./engine/
func BenchmarkPrepareRequest(b *testing.B) {
	for _, c := range []struct{ language, code string }{
		{"python", "import sys\nprint(sum(range(10)), file=sys.stdout)\n"},
		{"typescript", "const xs: number[] = [1, 2, 3];\nfunction total(a: number[]): number { return a.reduce((s, x) => s + x, 0); }\nconsole.log(total(xs));\n"},
	} {
		b.Run(c.language, func(b *testing.B) {
			l := DefaultLimits()
			b.ReportAllocs()
			for b.Loop() {
				r := Request{Account: "default", Language: c.language, Code: c.code, Env: map[string]string{"DEBUG": "1"}}
				if err := r.normalize(l); err != nil {
					b.Fatal(err)
				}
				if _, err := command(&r); err != nil {
					b.Fatal(err)
				}
				_ = environment(&r)
			}
		})
	}
}
