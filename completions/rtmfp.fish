# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rtmfp_global_optspecs
    string join \n v/verbose q/quiet h/help V/version
end

function __fish_rtmfp_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rtmfp_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rtmfp_using_subcommand
    set -l cmd (__fish_rtmfp_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rtmfp -n "__fish_rtmfp_needs_command" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "serve" -d 'Run the rendezvous server and media relay'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "connect" -d 'Connect to an RTMFP server and report what happened'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "publish" -d 'Publish a live FLV stream from a file or stdin'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "subscribe" -d 'Play a live stream and write it as FLV'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "send" -d 'Send data messages on a stream (NetStream.send)'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "probe-nat" -d 'Name this host\'s NAT in RFC 4787 terms and predict which peers a direct session can reach'
complete -c rtmfp -n "__fish_rtmfp_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -s l -l listen -d 'Address to listen on (repeatable): IP:PORT, [IPv6]:PORT or HOST:PORT (resolved once, at start). Default: 0.0.0.0:1935 and [::]:1935' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l identity -d 'Identity key file; created on first run. Default: $XDG_DATA_HOME/rtmfp/server.key (or ~/.local/share/rtmfp/server.key)' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l max-sessions -d 'Most sessions at once; further handshakes are refused (and logged)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l handshake-rate -d 'Most new handshakes per second from one source prefix (see --source-prefix-v4/-v6; 0 = unlimited)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l keepalive -d 'Keepalive period sent to clients, in seconds' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l crypto-threads -d 'Threads for handshake Diffie-Hellman work, off the packet path. Default: one per spare core (at least 1); 0 runs it inline on the packet thread. When they are all busy, new handshakes are dropped (clients resend) rather than queued, and no one address gets more than its share' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l dh-key-lifetime -d 'With --ephemeral: reuse the server\'s ephemeral DH key for new sessions for up to this long (e.g. 10s, 1m), halving the cost of a handshake. Trade-off: the sessions sharing a key lose forward secrecy between them; whoever later obtains that key (it lives in memory for this window) can decrypt all of them. Default: a fresh key per session' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l source-prefix-v4 -d 'Prefix length that makes one IPv4 source for every per-source limit (handshake rate, half-open sessions, answer budgets, fair share of key computation)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l source-prefix-v6 -d 'Prefix length that makes one IPv6 source (a host usually owns a whole /64)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l keying-budget -d 'Diffie-Hellman work per second, in group-2 key computations (a group-16 one costs 20): above it new handshakes are dropped before any computation, and each source prefix gets a fair share. 0 = unlimited' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l probe-addr -d 'Answer NAT probes on this extra address (repeatable): STUN Binding requests (RFC 5389, with the RFC 5780 attributes OTHER-ADDRESS and RESPONSE-ORIGIN, CHANGE-REQUEST honoured among the probe addresses). Give two IPs and two ports, e.g. A:3478 A:3479 B:3478 B:3479, for a full RFC 5780 server at A:3478. Off unless given' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l probe-app -d 'Run the RTMFP connectivity check only for clients of this app (repeatable); without it, every client that sends setPeerInfo is checked, as rtmfp-cpp\'s conncheck does' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l metrics -d 'Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9935; port 0 picks one, reported in the log and as a JSON "metrics" event)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l publisher-timeout -d 'A publisher whose session sends nothing at all for this long, although the server pings it (from a third of this on), is taken as gone (killed, unplugged): its streams are unpublished at once, subscribers get NetStream.Play.UnpublishNotify naming the silence, and its session is closed. Without it a vanished publisher is only noticed when its session times out. 0 = leave it to the session' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l refresh -d 'Dashboard refresh period' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l log-file -d 'With --dashboard, also append log lines to this file' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l stats-interval -d 'Print the dashboard\'s aggregate figures (sessions by state, packets, bytes, drops by reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per second) as one JSON object per line on stdout, every DURATION' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l ephemeral -d 'Use a fresh in-memory identity instead of a key file'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l json -d 'Write one JSON object per event on stdout (logs stay on stderr)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l require-hmac -d 'Refuse clients that do not authenticate every packet with HMAC-SHA-256. By default HMAC is used with every client that supports it (rtmfp-cpp, rtmfp) and left off for Flash-class clients (Flash Player, AIR, librtmfp), which only offer it on request'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l require-sseq -d 'Refuse clients that do not number their packets (session sequence numbers, which stop replays). Same default as for HMAC'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l introduce-across-apps -d 'Introduce clients of different apps to each other. By default an introduction is only made between two clients connected to the same app; anything else is answered as if the target were unknown'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -l dashboard -d 'Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views, arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish, subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and --log-file)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand serve" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s t -l timeout -d 'Give up after this long without a connection (e.g. 5s, 500ms)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s c -l count -d 'Keep the session and report RTT (RTMFP ping) this many times, then a min/avg/max summary' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s i -l interval -d 'Time between RTT probes with --count (at least 10ms). A reply that comes after the next probe left is reported late, not lost; a probe is lost after 2 s (or 3 intervals)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l sessions -d 'Load test: open this many sessions (handshake + connect, closed once answered) and report setup-time percentiles, sessions per second and failures by kind' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l concurrency -d 'Sessions being set up at once with --sessions. Each slot has its own UDP port and client identity, since servers key connections by peer ID' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l dh-group -d 'Diffie-Hellman group to offer. `auto`: the strongest both ends support, and Flash Player\'s group 2 with its single-key certificate for servers whose certificate is Flash-era (MonaServer, Cumulus), which key with nothing else. Peer sessions we open (--peer) prefer group 14 (2048-bit) over 16: both sides pay the exponentiations while the user waits (about 0.3 ms each instead of 1.5 ms here; opening takes ~1 ms on loopback instead of ~2.6), and 2048 bits is the accepted minimum (1024-bit group 2 is within reach of precomputation). Give 16 to insist on 4096 bits. Flash Player and librtmfp peers key only with group 2 and read only Flash\'s single-key certificate: with `auto`, a peer we open a session to that presents that certificate is answered with a Flash Player identity (it then knows us by that identity\'s peer ID; the report says so). To be reachable by them, use --dh-group 2' -r -f -a "auto\t'The strongest group both ends support'
2\t'1024-bit MODP group 2, the only one Flash Player uses'
5\t'1536-bit MODP group 5'
14\t'2048-bit MODP group 14'
16\t'4096-bit MODP group 16'"
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l crypto-threads -d 'Threads for handshake Diffie-Hellman work with --sessions. Default: one per spare core (at least 1); 0 runs it inline' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l refresh -d 'Dashboard refresh period' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l log-file -d 'With --dashboard, also append log lines to this file' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l stats-interval -d 'Print the dashboard\'s aggregate figures (sessions by state, packets, bytes, drops by reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per second) as one JSON object per line on stdout, every DURATION' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l peer -d 'Open a direct session to this peer (64-hex-digit peer ID, or a name registered with --name) through the server and report the path and timings. Repeatable' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l name -d 'Register this name in the app, so others can use --peer NAME' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l stay -d 'Stay connected this long after the rest is done, accepting peer sessions and printing the data messages peers send us (e.g. 60s)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l max-peers -d 'Accept at most this many peer sessions opened to us at once' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l allow -d 'Accept peer sessions only from this peer ID (repeatable)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l hold -d 'With --sessions: keep every connected session open (one UDP port and identity each) until interrupted, e.g. to measure server memory; the summary is printed once all are set up'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l json -d 'Write the report as one JSON object per line'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l dashboard -d 'Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views, arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish, subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and --log-file)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l list-peers -d 'Print who is present in the app: names, peer IDs, how long connected'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -l no-introductions -d 'Do not send setPeerInfo: the server will not introduce peers to us'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand connect" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l stream -d 'The stream name, for apps whose names contain slashes: the whole URL path is then the app' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -s t -l timeout -d 'Give up after this long without the stream started (connect, createStream, publish/play)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l dh-group -d 'Diffie-Hellman group to offer. With `auto`, a server session takes the strongest common group (Flash-era servers such as MonaServer and Cumulus are keyed as Flash Player would); a peer session we open (--peer) prefers group 14 (2048-bit): about a fifth of group 16\'s cost on both sides while the peer session opens, and well above 1024-bit group 2. Flash Player and librtmfp peers key only with group 2 and read only Flash\'s single-key certificate: with `auto`, a peer we open a session to that presents that certificate is answered with a Flash Player identity. To be reachable by them (publish --p2p), use --dh-group 2' -r -f -a "auto\t'The strongest group both ends support'
2\t'1024-bit MODP group 2, the only one Flash Player uses'
5\t'1536-bit MODP group 5'
14\t'2048-bit MODP group 14'
16\t'4096-bit MODP group 16'"
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l speed -d 'Pace at this multiple of real time' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l loop -d 'Publish the file this many times (a number, or inf); timestamps continue across loops' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l video-lifetime -d 'Lifetime of video messages before they are abandoned' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l audio-lifetime -d 'Lifetime of audio messages before they are abandoned' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l max-peers -d 'Accept at most this many peer sessions at once' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l allow -d 'Accept peer sessions only from this peer ID (repeatable). Such a publisher never relays through the server (a server stream is open to the whole app)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l name -d 'Register this name in the app, so peers can play with --peer NAME' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l wait-peers -d 'Start reading FILE only once this many peers play (each then gets the whole stream)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l refresh -d 'Dashboard refresh period' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l log-file -d 'With --dashboard, also append log lines to this file' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l stats-interval -d 'Print the dashboard\'s aggregate figures (sessions by state, packets, bytes, drops by reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per second) as one JSON object per line on stdout, every DURATION' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l as-fast-as-possible -d 'No pacing: send as fast as the network takes it (media is then sent reliably)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l json -d 'Progress and events as JSON lines on stdout'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l p2p -d 'Publish directly to the peers that play the stream (directConnections), not to the server'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l print-peer-id -d 'Print our peer ID (64 hex digits) on stdout once connected'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l no-introductions -d 'Do not let the server introduce peers to us (our addresses stay private): peers that play us then get the stream through the server (subscribe --fallback relay)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -l dashboard -d 'Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views, arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish, subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and --log-file)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand publish" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l stream -d 'The stream name, for apps whose names contain slashes: the whole URL path is then the app' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -s t -l timeout -d 'Give up after this long without the stream started (connect, createStream, publish/play)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l dh-group -d 'Diffie-Hellman group to offer. With `auto`, a server session takes the strongest common group (Flash-era servers such as MonaServer and Cumulus are keyed as Flash Player would); a peer session we open (--peer) prefers group 14 (2048-bit): about a fifth of group 16\'s cost on both sides while the peer session opens, and well above 1024-bit group 2. Flash Player and librtmfp peers key only with group 2 and read only Flash\'s single-key certificate: with `auto`, a peer we open a session to that presents that certificate is answered with a Flash Player identity. To be reachable by them (publish --p2p), use --dh-group 2' -r -f -a "auto\t'The strongest group both ends support'
2\t'1024-bit MODP group 2, the only one Flash Player uses'
5\t'1536-bit MODP group 5'
14\t'2048-bit MODP group 14'
16\t'4096-bit MODP group 16'"
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -s o -l output -d 'Write the stream as FLV to this file, or - for stdout' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l duration -d 'Stop this long after the first frame' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l frames -d 'Stop after this many audio and video frames' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l wait -d 'How long to wait for a publisher (for the first frame or data message)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l start -d 'NetStream.play\'s start: -2 live (or recorded; the default), -1 live only, 0 or more asks for recorded content from that second on. rtmfp serve relays live streams only and answers a recording request with NetStream.Play.StreamNotFound (exit 5)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l len -d 'NetStream.play\'s len: ask the server for this many seconds of media, after which it ends the play with NetStream.Play.Stop; 0 asks for a single frame. Unlike --duration, the server counts, in media time' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l peer -d 'Play directly from this peer (64-hex-digit peer ID, or a name registered with --name). Repeatable: alternatives for the same stream (e.g. two publishers of one camera). All are opened and played at once; the first to start playing wins, the others are closed. The `peer_result` line names the winner and why each other one lost (failed, refused, or slower); --fallback applies once every one has failed' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l name -d 'Register this name in the app while playing' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l fallback -d 'With --peer, when no direct session opens within --direct-timeout: relay (ask the server to have the publisher publish the stream to it too, and play it from there), or none (fail, exit 8)' -r -f -a "relay\t'Play through the server (our extension: the publisher must be an rtmfp publish --p2p)'
none\t'Fail with the reason (exit code 8)'"
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l direct-timeout -d 'With --peer, how long the direct session may take to open' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l refresh -d 'Dashboard refresh period' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l log-file -d 'With --dashboard, also append log lines to this file' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l stats-interval -d 'Print the dashboard\'s aggregate figures (sessions by state, packets, bytes, drops by reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per second) as one JSON object per line on stdout, every DURATION' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l json -d 'Data messages and the summary as JSON lines on stdout (on stderr with -o -)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -l dashboard -d 'Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views, arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish, subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and --log-file)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand subscribe" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l stream -d 'The stream name, for apps whose names contain slashes: the whole URL path is then the app' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -s t -l timeout -d 'Give up after this long without the stream started (connect, createStream, publish/play)' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l dh-group -d 'Diffie-Hellman group to offer. With `auto`, a server session takes the strongest common group (Flash-era servers such as MonaServer and Cumulus are keyed as Flash Player would); a peer session we open (--peer) prefers group 14 (2048-bit): about a fifth of group 16\'s cost on both sides while the peer session opens, and well above 1024-bit group 2. Flash Player and librtmfp peers key only with group 2 and read only Flash\'s single-key certificate: with `auto`, a peer we open a session to that presents that certificate is answered with a Flash Player identity. To be reachable by them (publish --p2p), use --dh-group 2' -r -f -a "auto\t'The strongest group both ends support'
2\t'1024-bit MODP group 2, the only one Flash Player uses'
5\t'1536-bit MODP group 5'
14\t'2048-bit MODP group 14'
16\t'4096-bit MODP group 16'"
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l peer -d 'Send directly to this peer (64-hex-digit peer ID, or a name registered with --name). Repeatable: every message goes to each peer (one opening late gets them all), a `peer_result` line per peer says how many it got or why it failed, and the exit code is 8 if any failed' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l name -d 'Register this name in the app while sending' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l refresh -d 'Dashboard refresh period' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l log-file -d 'With --dashboard, also append log lines to this file' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l stats-interval -d 'Print the dashboard\'s aggregate figures (sessions by state, packets, bytes, drops by reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per second) as one JSON object per line on stdout, every DURATION' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l stdin -d 'Read one message per line from stdin (after any ARGs given)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l json -d 'Events as JSON lines on stdout'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -l dashboard -d 'Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views, arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish, subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and --log-file)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand send" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s t -l timeout -d 'Give up waiting for the server\'s first answer after this long' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l lifetime-max -d 'Longest idle time tried with --lifetime' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l peer -d 'After the probe (rtmfp:// only), try a direct session to this peer (peer ID, or a name it registered with `connect --name`) through the server\'s introduction, and report what spec 05 §5.1 predicted from our NAT class against what happened, and what that says of the peer\'s NAT. JSON: {"type":"peer_check", "target", "peer_id", "our_class", "predicted": {"direct" (bool|null), "direct_with", "relay_with"}, "actual": {"direct", "addr", "path", "elapsed_ms", "rtt_ms" | "message"}, "agrees" (bool|null), "explanation"}. Exit 8 when the server does not know the peer' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l peer-timeout -d 'With --peer: how long the direct session may take to open' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l refresh -d 'Dashboard refresh period' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l log-file -d 'With --dashboard, also append log lines to this file' -r -F
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l stats-interval -d 'Print the dashboard\'s aggregate figures (sessions by state, packets, bytes, drops by reason, handshakes, retransmissions, flows, messages, introductions, streams, rates per second) as one JSON object per line on stdout, every DURATION' -r
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l lifetime -d 'Also measure how long an idle mapping lasts (binary search on idle time: slow, up to about 8 x --lifetime-max)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s 4 -l ipv4 -d 'Probe IPv4 only'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s 6 -l ipv6 -d 'Probe IPv6 only'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l json -d 'Write the result as one JSON object per line (schema above)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -l dashboard -d 'Show a live terminal dashboard: sessions (sortable, filterable), their flows (TC stream ID, bytes and messages each way), packet charts, streams and log lines. Keys: Tab views, arrows select, Enter details, s sort, / filter, p pause, ? help, q quit. On publish, subscribe and send, Streams shows the stream (tags, audio/video, bytes, bit rate) and q ends it in order (exit 0 once it started). Needs a terminal; logs go to its pane (and --log-file)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s v -l verbose -d 'More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s q -l quiet -d 'Only errors on stderr'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand probe-nat" -s V -l version -d 'Print version'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "serve" -d 'Run the rendezvous server and media relay'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "connect" -d 'Connect to an RTMFP server and report what happened'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "publish" -d 'Publish a live FLV stream from a file or stdin'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "subscribe" -d 'Play a live stream and write it as FLV'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "send" -d 'Send data messages on a stream (NetStream.send)'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "probe-nat" -d 'Name this host\'s NAT in RFC 4787 terms and predict which peers a direct session can reach'
complete -c rtmfp -n "__fish_rtmfp_using_subcommand help; and not __fish_seen_subcommand_from serve connect publish subscribe send probe-nat help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
