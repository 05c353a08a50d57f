// The parts of the GCS XML API that object_store uses and fake-gcs-server 1.56.1 lacks
// (fsouza/fake-gcs-server#1164; object_store's own CI runs a fork for the same reason):
// a plain PUT of an object, and S3-style multipart uploads (POST ?uploads, PUT
// ?partNumber&uploadId, POST ?uploadId, DELETE ?uploadId). scripts/test-servers.sh adds this
// file to the fakestorage package and wraps the server's handler with cofferXML.
package fakestorage

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fsouza/fake-gcs-server/internal/backend"
)

type cofferUpload struct {
	bucket, name string
	parts        map[int][]byte
}

var (
	cofferUploadsMu sync.Mutex
	cofferUploads   = map[string]*cofferUpload{}
)

func cofferXMLError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>", code, message)
}

func (s *Server) cofferXML(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		for _, api := range []string{"/storage/", "/upload/", "/download/", "/batch/", "/_internal/"} {
			if strings.HasPrefix(p, api) {
				next.ServeHTTP(w, r)
				return
			}
		}
		segs := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)
		if len(segs) != 2 || segs[1] == "" {
			next.ServeHTTP(w, r)
			return
		}
		bucket, err1 := url.PathUnescape(segs[0])
		name, err2 := url.PathUnescape(segs[1])
		q := r.URL.Query()
		xmlCall := (r.Method == http.MethodPut && q.Get("uploadType") == "" && q.Get("X-Goog-Algorithm") == "") ||
			(r.Method == http.MethodPost && (q.Has("uploads") || q.Get("uploadId") != "")) ||
			(r.Method == http.MethodDelete && q.Get("uploadId") != "")
		if !xmlCall {
			next.ServeHTTP(w, r)
			return
		}
		if err1 != nil || err2 != nil {
			cofferXMLError(w, http.StatusBadRequest, "InvalidArgument", "bad object path")
			return
		}
		if _, err := s.backend.GetBucket(bucket); err != nil {
			cofferXMLError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist.")
			return
		}
		switch {
		case r.Method == http.MethodPut && q.Get("uploadId") != "":
			s.cofferPart(w, r, q.Get("uploadId"), q.Get("partNumber"))
		case r.Method == http.MethodPut:
			s.cofferPut(w, r, bucket, name, r.Body)
		case r.Method == http.MethodPost && q.Has("uploads"):
			id := make([]byte, 12)
			rand.Read(id)
			upload := hex.EncodeToString(id)
			cofferUploadsMu.Lock()
			cofferUploads[upload] = &cofferUpload{bucket: bucket, name: name, parts: map[int][]byte{}}
			cofferUploadsMu.Unlock()
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>", bucket, xmlEscape(name), upload)
		case r.Method == http.MethodPost:
			s.cofferComplete(w, r, q.Get("uploadId"))
		case r.Method == http.MethodDelete:
			cofferUploadsMu.Lock()
			delete(cofferUploads, q.Get("uploadId"))
			cofferUploadsMu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		}
	})
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *Server) cofferPut(w http.ResponseWriter, r *http.Request, bucket, name string, body io.Reader) {
	if r.Header.Get("x-goog-if-generation-match") == "0" {
		if _, err := s.backend.GetObject(bucket, name); err == nil {
			cofferXMLError(w, http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
			return
		}
	}
	obj := StreamingObject{
		ObjectAttrs: ObjectAttrs{
			BucketName:  bucket,
			Name:        name,
			ContentType: r.Header.Get("Content-Type"),
		},
		Content: notImplementedSeeker{io.NopCloser(body)},
	}
	obj, err := s.createObject(obj, backend.NoConditions{})
	if err != nil {
		cofferXMLError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	obj.Close()
	w.Header().Set("ETag", fmt.Sprintf("%q", obj.Etag))
	w.Header().Set("x-goog-generation", strconv.FormatInt(obj.Generation, 10))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) cofferPart(w http.ResponseWriter, r *http.Request, upload, number string) {
	n, err := strconv.Atoi(number)
	data, rerr := io.ReadAll(r.Body)
	if err != nil || rerr != nil {
		cofferXMLError(w, http.StatusBadRequest, "InvalidArgument", "bad part")
		return
	}
	cofferUploadsMu.Lock()
	u, ok := cofferUploads[upload]
	if ok {
		u.parts[n] = data
	}
	cofferUploadsMu.Unlock()
	if !ok {
		cofferXMLError(w, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return
	}
	sum := md5.Sum(data)
	w.Header().Set("ETag", fmt.Sprintf("%q", hex.EncodeToString(sum[:])))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) cofferComplete(w http.ResponseWriter, r *http.Request, upload string) {
	var req struct {
		Parts []struct {
			PartNumber int `xml:"PartNumber"`
		} `xml:"Part"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := xml.Unmarshal(body, &req); err != nil {
		cofferXMLError(w, http.StatusBadRequest, "MalformedXML", err.Error())
		return
	}
	cofferUploadsMu.Lock()
	u, ok := cofferUploads[upload]
	delete(cofferUploads, upload)
	cofferUploadsMu.Unlock()
	if !ok {
		cofferXMLError(w, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return
	}
	numbers := []int{}
	for _, p := range req.Parts {
		numbers = append(numbers, p.PartNumber)
	}
	sort.Ints(numbers)
	var all bytes.Buffer
	for _, n := range numbers {
		part, ok := u.parts[n]
		if !ok {
			cofferXMLError(w, http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d was not uploaded", n))
			return
		}
		all.Write(part)
	}
	obj := StreamingObject{
		ObjectAttrs: ObjectAttrs{BucketName: u.bucket, Name: u.name},
		Content:     notImplementedSeeker{io.NopCloser(bytes.NewReader(all.Bytes()))},
	}
	obj, err := s.createObject(obj, backend.NoConditions{})
	if err != nil {
		cofferXMLError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	obj.Close()
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-goog-generation", strconv.FormatInt(obj.Generation, 10))
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key><ETag>%q</ETag></CompleteMultipartUploadResult>", u.bucket, xmlEscape(u.name), obj.Etag)
}
