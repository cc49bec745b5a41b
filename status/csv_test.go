package status

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// jsonBackends decodes the backends of a JSON document keeping each object's key order and the
// exact text of its numbers.
func jsonBackends(t *testing.T, body string) (keys [][]string, values []map[string]string) {
	t.Helper()
	var doc struct{ Backends []json.RawMessage }
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	for _, raw := range doc.Backends {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var order []string
		vals := map[string]string{}
		if _, err := dec.Token(); err != nil { // {
			t.Fatal(err)
		}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			v, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, k.(string))
			vals[k.(string)] = fmt.Sprint(v)
		}
		keys, values = append(keys, order), append(values, vals)
	}
	return keys, values
}

// JSON and CSV give the same rows with the same columns and values, filtered alike.
func TestStatusCSVMatchesJSON(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()

	for _, filter := range []string{"", "&upstream=app", "&state=drain", "&state=maint"} {
		resp, body := get(t, srv.URL+"/status?format=csv"+filter)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("csv: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("csv%s: %v", filter, err)
		}
		_, jbody := get(t, srv.URL+"/status?format=json"+filter)
		keys, values := jsonBackends(t, jbody)

		header := recs[0]
		if want := strings.Join(backendColumns, ","); strings.Join(header, ",") != want {
			t.Errorf("csv header = %v, want %v", header, backendColumns)
		}
		if len(recs)-1 != len(values) {
			t.Fatalf("csv%s has %d rows, json %d", filter, len(recs)-1, len(values))
		}
		for i, rec := range recs[1:] {
			if strings.Join(keys[i], ",") != strings.Join(header, ",") {
				t.Errorf("row %d: json keys %v, csv header %v", i, keys[i], header)
			}
			for j, col := range header {
				if rec[j] != values[i][col] {
					t.Errorf("csv%s row %d %s = %q, json %q", filter, i, col, rec[j], values[i][col])
				}
			}
		}
	}
}

// The CSV of the fixture quotes the detail with a comma and quotes in it as RFC 4180 says.
func TestStatusCSVQuoting(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	_, body := get(t, srv.URL+"/status?format=csv&state=down")
	if !strings.Contains(body, `"<script>alert(""x"")</script> & more"`) {
		t.Errorf("detail not quoted: %s", body)
	}
	if lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "slot,upstream,address,state,admin,") {
		t.Errorf("csv = %q", body)
	}
}
