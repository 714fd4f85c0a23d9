# A small Plumber API used by faucet's README, tests and benchmarks.

#* Echo a message back
#* @param msg The message to echo
#* @get /echo
function(msg = "") {
  list(msg = msg)
}

#* Which worker answered (faucet sets FAUCET_WORKER_ID, 1-based)
#* @get /worker
function() {
  list(worker = Sys.getenv("FAUCET_WORKER_ID"), pid = Sys.getpid())
}

#* Block this worker for s seconds (R serves one request at a time)
#* @param s seconds
#* @get /sleep
function(s = "0.2") {
  Sys.sleep(as.numeric(s))
  list(slept = as.numeric(s), worker = Sys.getenv("FAUCET_WORKER_ID"))
}

#* Echo a JSON body
#* @post /json
function(req) {
  list(received = jsonlite::fromJSON(req$postBody), worker = Sys.getenv("FAUCET_WORKER_ID"))
}

#* Count the bytes of a request body
#* @post /upload
function(req) {
  list(bytes = length(req$bodyRaw))
}

#* Send mb megabytes of zeros
#* @param mb size in MiB
#* @serializer octet
#* @get /download
function(mb = "1") {
  raw(as.numeric(mb) * 1024 * 1024)
}

#* Echo the request headers faucet forwarded
#* @get /headers
function(req) {
  as.list(req$HEADERS)
}
