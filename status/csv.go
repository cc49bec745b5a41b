package status

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
)

// backendColumns are the JSON names of Backend's fields, in struct order: the CSV header.
var backendColumns = func() []string {
	t := reflect.TypeFor[Backend]()
	cols := make([]string, t.NumField())
	for i := range cols {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		cols[i] = name
	}
	return cols
}()

// WriteCSV writes the backends as CSV (RFC 4180): a header line with the JSON field names of
// Backend, in struct order, then one record per backend with the same values as the JSON
// document (booleans as true/false, numbers as JSON writes them, strings as they are).
func WriteCSV(w io.Writer, backends []Backend) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(backendColumns); err != nil {
		return err
	}
	rec := make([]string, len(backendColumns))
	for _, b := range backends {
		v := reflect.ValueOf(b)
		for i := range rec {
			rec[i] = csvValue(v.Field(i))
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvValue formats one field the way encoding/json writes it, without the quotes of strings.
func csvValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		if b, err := json.Marshal(v.Interface()); err == nil { // exactly its JSON number
			return string(b)
		}
	}
	panic(fmt.Sprintf("status: no CSV form for a %s field of Backend", v.Kind()))
}
