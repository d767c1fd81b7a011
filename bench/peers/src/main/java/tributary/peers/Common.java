package tributary.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What both peers share: the arguments, the parsing of Tributary's log records, the ad ->
 * campaign table, the results (one count per window and key, kept in this JVM: Flink's
 * MiniCluster runs in it) and the JSON line the bench script reads.
 *
 * <p>A record's value is the event as Tributary's log stores it (`Event::to_json_bytes`):
 * {"id": "...", "stream": "...", "ts": "2026-01-01T00:00:00.123Z", "key": "..." (absent
 * when none), "payload": {...}}.
 */
final class Common {
  private Common() {}

  static final ObjectMapper JSON = new ObjectMapper();

  /** The window results: "start ms TAB key" -> count. */
  static final Map<String, Long> RESULTS = new ConcurrentHashMap<>();
  /** Result rows written for a window and key that already had one (must stay 0). */
  static final AtomicLong REWRITES = new AtomicLong();
  static final AtomicLong RECORDS = new AtomicLong();
  static final AtomicLong FILTERED = new AtomicLong();
  static final AtomicLong DUPLICATES = new AtomicLong();
  static final AtomicLong LATE = new AtomicLong();
  /** System.nanoTime() and epoch ms of the first record read; 0 before. */
  static volatile long firstNanos;
  static volatile long firstEpochMs;

  /** The command line: --name value pairs. */
  static final class Args {
    final String engine;
    String brokers;
    String topic;
    String workload = "count";
    long events;
    long counted = -1;
    Path ads;
    Path results;
    Path stateDir;
    String appId;
    String label = "";
    int parallelism = 2;
    long checkpointMs = 1000;
    long outOfOrdernessMs = 10_000;
    long idleMs = 30_000;
    long graceMs = -1;
    long timeoutSecs = 900;
    String stateBackend = "rocksdb";

    Args(String engine, String[] argv) {
      this.engine = engine;
      for (int i = 0; i < argv.length; i += 2) {
        if (i + 1 >= argv.length) {
          throw new IllegalArgumentException("no value for " + argv[i]);
        }
        String v = argv[i + 1];
        switch (argv[i]) {
          case "--brokers" -> brokers = v;
          case "--topic" -> topic = v;
          case "--workload" -> workload = v;
          case "--events" -> events = Long.parseLong(v);
          case "--counted" -> counted = Long.parseLong(v);
          case "--ads" -> ads = Path.of(v);
          case "--results" -> results = Path.of(v);
          case "--state-dir" -> stateDir = Path.of(v);
          case "--app-id" -> appId = v;
          case "--label" -> label = v;
          case "--parallelism" -> parallelism = Integer.parseInt(v);
          case "--checkpoint-interval-ms" -> checkpointMs = Long.parseLong(v);
          case "--max-out-of-orderness-ms" -> outOfOrdernessMs = Long.parseLong(v);
          case "--grace-ms" -> graceMs = Long.parseLong(v);
          case "--timeout-secs" -> timeoutSecs = Long.parseLong(v);
          case "--state-backend" -> stateBackend = v;
          default -> throw new IllegalArgumentException("unknown argument " + argv[i]);
        }
      }
      if (brokers == null || topic == null || events <= 0 || results == null || stateDir == null
          || appId == null) {
        throw new IllegalArgumentException(
            "usage: --brokers B --topic T --events N --results FILE --state-dir DIR --app-id ID"
                + " [--workload count|yahoo] [--ads ads.csv] [--counted C] [--label L]");
      }
      if (!workload.equals("count") && !workload.equals("yahoo")) {
        throw new IllegalArgumentException("--workload must be count or yahoo");
      }
      if (yahoo() && ads == null) {
        throw new IllegalArgumentException("--workload yahoo needs --ads");
      }
    }

    boolean yahoo() {
      return workload.equals("yahoo");
    }

    /** The tumbling window's size: 1 minute (count), 10 seconds (YSB). */
    long windowMs() {
      return yahoo() ? 10_000 : 60_000;
    }
  }

  /** What the pipelines need of one event. */
  public static final class Ev {
    public String id;
    public long ts;
    /** count: the event key (the page); yahoo: the ad, then its campaign. */
    public String key;
    /** yahoo: payload.event_type. */
    public String type;

    public Ev() {}
  }

  /** Parses one record's value; notes the first record (and prints the drain marker). */
  static Ev parse(byte[] value, boolean yahoo) throws IOException {
    if (firstNanos == 0) {
      markFirst();
    }
    RECORDS.incrementAndGet();
    JsonNode node = JSON.readTree(value);
    Ev ev = new Ev();
    ev.id = node.get("id").asText();
    ev.ts = Instant.parse(node.get("ts").asText()).toEpochMilli();
    if (yahoo) {
      JsonNode payload = node.get("payload");
      ev.key = payload.path("ad_id").asText();
      ev.type = payload.path("event_type").asText();
    } else {
      ev.key = node.path("key").asText();
    }
    return ev;
  }

  private static synchronized void markFirst() {
    if (firstNanos == 0) {
      firstEpochMs = System.currentTimeMillis();
      firstNanos = System.nanoTime();
      // `benchctl watch-drain` measures the CPU time from this line on.
      System.err.println("[peer] kafka: draining");
      System.err.flush();
    }
  }

  /** The ad -> campaign table (CSV with the header ad_id,campaign_id). */
  static HashMap<String, String> campaigns(Path csv) throws IOException {
    HashMap<String, String> map = new HashMap<>();
    List<String> lines = Files.readAllLines(csv, StandardCharsets.UTF_8);
    for (String line : lines.subList(1, lines.size())) {
      int comma = line.indexOf(',');
      if (comma > 0) {
        map.put(line.substring(0, comma), line.substring(comma + 1).trim());
      }
    }
    return map;
  }

  static void result(long windowStart, String key, long count) {
    if (RESULTS.put(windowStart + "\t" + key, count) != null) {
      REWRITES.incrementAndGet();
    }
  }

  static long countedSoFar() {
    long sum = 0;
    for (long c : RESULTS.values()) {
      sum += c;
    }
    return sum;
  }

  /** Writes the results sorted ("start TAB key TAB count" lines) and the JSON line. */
  static void report(Args args, long endNanos, Map<String, Object> extra) throws IOException {
    TreeMap<String, Long> sorted = new TreeMap<>(RESULTS);
    StringBuilder text = new StringBuilder();
    for (Map.Entry<String, Long> e : sorted.entrySet()) {
      text.append(e.getKey()).append('\t').append(e.getValue()).append('\n');
    }
    Files.writeString(args.results, text, StandardCharsets.UTF_8);
    double seconds = firstNanos == 0 ? 0 : (endNanos - firstNanos) / 1e9;
    long jvmStart = ManagementFactory.getRuntimeMXBean().getStartTime();
    ObjectNode out = JSON.createObjectNode();
    out.put("bench", "peer");
    out.put("engine", args.engine);
    out.put("label", args.label);
    out.put("workload", args.workload);
    out.put("topic", args.topic);
    out.put("events", args.events);
    out.put("records", RECORDS.get());
    out.put("pipeline_seconds", Math.round(seconds * 1000) / 1000.0);
    out.put("pipeline_events_per_sec", seconds > 0 ? Math.round(args.events / seconds) : 0);
    out.put("startup_seconds",
        firstEpochMs == 0 ? 0 : Math.round(firstEpochMs - jvmStart) / 1000.0);
    out.put("windows", sorted.size());
    out.put("counted", countedSoFar());
    out.put("filtered", FILTERED.get());
    out.put("duplicates", DUPLICATES.get());
    out.put("late_events", LATE.get());
    out.put("rewritten_rows", REWRITES.get());
    out.put("results", args.results.toString());
    out.put("parallelism", args.parallelism);
    out.put("checkpoint_interval_ms", args.checkpointMs);
    for (Map.Entry<String, Object> e : extra.entrySet()) {
      out.putPOJO(e.getKey(), e.getValue());
    }
    System.out.println(JSON.writeValueAsString(out));
    System.out.flush();
  }
}
