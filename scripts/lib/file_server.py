"""A static file server for the bench that sends files with sendfile(2), as nginx, S3 and
other production file servers do (python3 -m http.server copies every byte through Python,
which on a 2-core machine takes a whole core from the client it is measured against).
GET and HEAD, one byte range (Range: bytes=N-M or N-), ETag. Usage: file_server.py IP PORT DIR
"""
import email.utils
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = sys.argv[3]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_file(self, head_only):
        path = os.path.join(ROOT, os.path.basename(self.path.split("?")[0]))
        try:
            f = open(path, "rb")
        except OSError:
            self.send_error(404)
            return
        with f:
            st = os.fstat(f.fileno())
            size, start, end = st.st_size, 0, st.st_size - 1
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            status = 200
            if m:
                start = int(m.group(1))
                end = min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
                if start > end:
                    self.send_error(416)
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("ETag", '"%x-%x"' % (st.st_mtime_ns, size))
            self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
            self.end_headers()
            if not head_only:
                self.wfile.flush()
                self.connection.sendfile(f, start, end - start + 1)

    def do_GET(self):
        self.send_file(False)

    def do_HEAD(self):
        self.send_file(True)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
