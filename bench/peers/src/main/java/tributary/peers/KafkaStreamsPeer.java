package tributary.peers;

import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.internals.AppInfoParser;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The bench's pipelines on Kafka Streams 4.x: exactly_once_v2, 2 stream threads, commit
 * interval 1 s. One processor parses each record (Tributary's JSON), takes its event time
 * as the record's timestamp, filters (YSB: views only), looks the ad's campaign up (YSB) and
 * drops duplicate ids (a persistent window store of the ids, kept 3 windows + 10 s); then a
 * windowed count per key, tumbling, grace 10 s (the watermark's bound), whose updates a
 * `foreach` discards but for the last count of each window. The count workload's records
 * are keyed by the page already (Tributary's partition key): grouped by key, no
 * repartition; YSB's are keyed by event id: grouped by campaign through a repartition topic,
 * as Tributary repartitions that pipeline.
 *
 * <p>Kafka Streams has no watermark: a window takes records until its end plus the grace
 * period passes the task's stream time, the largest record time it has seen. After the
 * repartition (YSB), a task reads records of every upstream task interleaved, and these
 * progress unevenly, so stream time runs ahead of the slowest one by more than the events'
 * disorder: `--grace-ms` (default: the out-of-orderness bound) must cover that skew for
 * the counts to be complete; the bench script gives YSB the events' whole time span.
 *
 * <p>The drain is timed from the first record read until the results hold every expected
 * event (`--counted`, from the ground truth): the results are forwarded when a commit
 * flushes the caches, so that is the commit after the last record. Should they never get
 * there, it stops after 30 s without progress and the results' check fails.
 */
public final class KafkaStreamsPeer {
  private KafkaStreamsPeer() {}

  public static void main(String[] argv) throws Exception {
    Common.Args args = new Common.Args("kafka-streams", argv);
    if (args.counted < 0) {
      throw new IllegalArgumentException("kafka-streams needs --counted (events in the results)");
    }
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.brokers);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.parallelism);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, args.checkpointMs);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args.stateDir.toString());
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    boolean yahoo = args.yahoo();
    HashMap<String, String> campaigns = yahoo ? Common.campaigns(args.ads) : new HashMap<>();
    long window = args.windowMs();
    long retention = 3 * window + args.outOfOrdernessMs;
    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(Stores.windowStoreBuilder(
        Stores.persistentWindowStore("seen-ids", Duration.ofMillis(retention),
            Duration.ofMillis(window), false),
        Serdes.String(), Serdes.Long()));
    KStream<String, byte[]> input =
        builder.stream(args.topic, Consumed.with(Serdes.String(), Serdes.ByteArray()));
    KStream<String, String> keys =
        input.processValues(() -> new ParseDedup(yahoo, campaigns), "seen-ids");
    KGroupedStream<String, String> grouped = yahoo
        ? keys.groupBy((id, campaign) -> campaign,
            Grouped.with("by-campaign", Serdes.String(), Serdes.String()))
        : keys.groupByKey(Grouped.with(Serdes.String(), Serdes.String()));
    grouped
        .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(window),
            Duration.ofMillis(args.graceMs >= 0 ? args.graceMs : args.outOfOrdernessMs)))
        .count(Materialized.as("counts"))
        .toStream()
        .foreach((w, count) -> Common.result(w.window().start(), w.key(), count));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
          .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();
    long deadline = System.nanoTime() + args.timeoutSecs * 1_000_000_000L;
    long last = -1;
    long lastChange = System.nanoTime();
    long end;
    boolean complete;
    while (true) {
      Thread.sleep(20);
      long now = System.nanoTime();
      long counted = Common.countedSoFar();
      if (counted == args.counted) {
        end = now;
        complete = true;
        break;
      }
      if (counted != last) {
        last = counted;
        lastChange = now;
      }
      boolean stalled = Common.firstNanos != 0 && now - lastChange > 30_000_000_000L;
      if (stalled || now > deadline || streams.state() == KafkaStreams.State.ERROR
          || streams.state() == KafkaStreams.State.NOT_RUNNING) {
        end = lastChange;
        complete = false;
        System.err.printf("[peer] kafka-streams: stopped at %d of %d counted events (%s)%n",
            counted, args.counted, streams.state());
        break;
      }
    }
    // Records the windowed count dropped as late (its grace period passed).
    double dropped = 0;
    for (var metric : streams.metrics().entrySet()) {
      if (metric.getKey().name().equals("dropped-records-total")
          && metric.getKey().group().equals("stream-task-metrics")
          && metric.getValue().metricValue() instanceof Number n) {
        dropped += n.doubleValue();
      }
    }
    Common.LATE.set((long) dropped);
    Map<String, Object> extra = new LinkedHashMap<>();
    extra.put("version", AppInfoParser.getVersion());
    extra.put("grace_ms", args.graceMs >= 0 ? args.graceMs : args.outOfOrdernessMs);
    extra.put("complete", complete);
    Common.report(args, end, extra);
    streams.close(Duration.ofSeconds(30));
    streams.cleanUp();
    // Incomplete results are reported (the bench script's check marks them), not an error.
    System.exit(0);
  }

  /** Parse, filter, look up, de-duplicate; the value becomes the key to count by. */
  static final class ParseDedup implements FixedKeyProcessor<String, byte[], String> {
    private final boolean yahoo;
    private final Map<String, String> campaigns;
    private FixedKeyProcessorContext<String, String> context;
    private WindowStore<String, Long> seen;

    ParseDedup(boolean yahoo, Map<String, String> campaigns) {
      this.yahoo = yahoo;
      this.campaigns = campaigns;
    }

    @Override
    public void init(FixedKeyProcessorContext<String, String> context) {
      this.context = context;
      this.seen = context.getStateStore("seen-ids");
    }

    @Override
    public void process(FixedKeyRecord<String, byte[]> record) {
      Common.Ev ev;
      try {
        ev = Common.parse(record.value(), yahoo);
      } catch (java.io.IOException e) {
        throw new IllegalStateException("a record that is not an event", e);
      }
      if (yahoo && !"view".equals(ev.type)) {
        Common.FILTERED.incrementAndGet();
        return;
      }
      if (seen.fetch(ev.id, ev.ts) != null) {
        Common.DUPLICATES.incrementAndGet();
        return;
      }
      seen.put(ev.id, ev.ts, ev.ts);
      String key = yahoo ? campaigns.getOrDefault(ev.key, "") : ev.key;
      context.forward(record.withValue(key).withTimestamp(ev.ts));
    }
  }
}
