package tributary.peers;

import java.io.IOException;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.StateTtlConfig;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.connector.kafka.source.reader.deserializer.KafkaRecordDeserializationSchema;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamUtils;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * The bench's pipelines on Apache Flink 2.x, in a local MiniCluster in this JVM: reads the
 * pre-filled topic from the earliest to the latest offsets (a bounded source: the job ends
 * by itself there, and the end of input fires every window), event time with a
 * bounded-out-of-orderness watermark per partition (10 s, idle after 30 s, as Tributary's
 * pipelines), de-duplication by event id in keyed state (the ids of each key, with a TTL),
 * counts per key in tumbling windows, and a sink that discards the results but keeps the
 * last count of each window in memory to write them out. Exactly-once checkpoints every
 * second (RocksDB state backend with incremental checkpoints, on the local file system).
 *
 * <p>The drain is timed from the first record read to the job's end (its final checkpoint
 * done: the exactly-once commit of the last results).
 */
public final class FlinkPeer {
  private FlinkPeer() {}

  static final OutputTag<Common.Ev> LATE = new OutputTag<>("late", TypeInformation.of(Common.Ev.class));

  public static void main(String[] argv) throws Exception {
    Common.Args args = new Common.Args("flink", argv);
    Configuration conf = new Configuration();
    conf.set(StateBackendOptions.STATE_BACKEND, args.stateBackend);
    // RocksDB checkpoints incrementally (only new files), as Flink advises for large state
    // such as the de-duplication ids; the HashMap backend snapshots all of it each time.
    conf.set(CheckpointingOptions.INCREMENTAL_CHECKPOINTS, args.stateBackend.equals("rocksdb"));
    conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
    conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY,
        args.stateDir.resolve("checkpoints").toUri().toString());
    conf.set(CheckpointingOptions.CHECKPOINTING_INTERVAL, Duration.ofMillis(args.checkpointMs));
    conf.set(CheckpointingOptions.CHECKPOINTING_CONSISTENCY_MODE, CheckpointingMode.EXACTLY_ONCE);
    StreamExecutionEnvironment env =
        StreamExecutionEnvironment.createLocalEnvironment(args.parallelism, conf);

    boolean yahoo = args.yahoo();
    KafkaSource<Common.Ev> source = KafkaSource.<Common.Ev>builder()
        .setBootstrapServers(args.brokers)
        .setTopics(args.topic)
        .setGroupId(args.appId)
        .setStartingOffsets(OffsetsInitializer.earliest())
        .setBounded(OffsetsInitializer.latest())
        .setDeserializer(KafkaRecordDeserializationSchema.valueOnly(new Parse(yahoo)))
        .build();
    WatermarkStrategy<Common.Ev> watermarks = WatermarkStrategy
        .<Common.Ev>forBoundedOutOfOrderness(Duration.ofMillis(args.outOfOrdernessMs))
        .withTimestampAssigner((ev, recordTs) -> ev.ts)
        .withIdleness(Duration.ofMillis(args.idleMs));
    DataStream<Common.Ev> events = env.fromSource(source, watermarks, "tributary-topic");
    if (yahoo) {
      HashMap<String, String> campaigns = Common.campaigns(args.ads);
      events = events
          .filter(ev -> {
            if ("view".equals(ev.type)) {
              return true;
            }
            Common.FILTERED.incrementAndGet();
            return false;
          })
          .name("filter view")
          .map(ev -> {
            String campaign = campaigns.get(ev.key);
            ev.key = campaign == null ? "" : campaign;
            return ev;
          })
          .name("ad -> campaign");
    }
    // De-duplication keyed by the result's key (an event's duplicates have its key), so
    // that the window operator reads the same partitioning without another shuffle.
    DataStream<Common.Ev> unique = events
        .keyBy(ev -> ev.key, Types.STRING)
        .process(new Dedup(Duration.ofMillis(3 * args.windowMs() + args.outOfOrdernessMs)))
        .name("dedup by id");
    SingleOutputStreamOperator<Row> counts = DataStreamUtils
        .reinterpretAsKeyedStream(unique, ev -> ev.key, Types.STRING)
        .window(TumblingEventTimeWindows.of(Duration.ofMillis(args.windowMs())))
        .sideOutputLateData(LATE)
        .aggregate(new Count(), new Emit())
        .name("count per window");
    counts.sinkTo(new CountingSink()).name("discard (counting)");
    counts.getSideOutput(LATE).map(ev -> Common.LATE.incrementAndGet()).name("late");

    JobClient job = env.executeAsync("tributary-peer-" + args.workload);
    JobExecutionResult result = job.getJobExecutionResult().get();
    long end = System.nanoTime();
    Map<String, Object> extra = new LinkedHashMap<>();
    extra.put("version", org.apache.flink.runtime.util.EnvironmentInformation.getVersion());
    extra.put("state_backend", args.stateBackend);
    extra.put("job_runtime_ms", result.getNetRuntime());
    Common.report(args, end, extra);
    // The MiniCluster's threads: do not wait for them.
    System.exit(0);
  }

  /** A record's value -> the event's id, time and key (and type). */
  static final class Parse implements DeserializationSchema<Common.Ev> {
    private final boolean yahoo;

    Parse(boolean yahoo) {
      this.yahoo = yahoo;
    }

    @Override
    public Common.Ev deserialize(byte[] message) throws IOException {
      return Common.parse(message, yahoo);
    }

    @Override
    public boolean isEndOfStream(Common.Ev next) {
      return false;
    }

    @Override
    public TypeInformation<Common.Ev> getProducedType() {
      return TypeInformation.of(Common.Ev.class);
    }
  }

  /** Drops an event whose id its key already saw (ids kept for a TTL). */
  static final class Dedup extends KeyedProcessFunction<String, Common.Ev, Common.Ev> {
    private final Duration ttl;
    private transient MapState<String, Boolean> seen;

    Dedup(Duration ttl) {
      this.ttl = ttl;
    }

    @Override
    public void open(OpenContext context) {
      MapStateDescriptor<String, Boolean> descriptor =
          new MapStateDescriptor<>("seen-ids", Types.STRING, Types.BOOLEAN);
      descriptor.enableTimeToLive(StateTtlConfig.newBuilder(ttl).build());
      seen = getRuntimeContext().getMapState(descriptor);
    }

    @Override
    public void processElement(Common.Ev ev, Context context, Collector<Common.Ev> out)
        throws Exception {
      if (seen.contains(ev.id)) {
        Common.DUPLICATES.incrementAndGet();
        return;
      }
      seen.put(ev.id, Boolean.TRUE);
      out.collect(ev);
    }
  }

  /** A window's result row. */
  public static final class Row {
    public long start;
    public String key;
    public long count;

    public Row() {}
  }

  static final class Count implements AggregateFunction<Common.Ev, Long, Long> {
    @Override
    public Long createAccumulator() {
      return 0L;
    }

    @Override
    public Long add(Common.Ev value, Long acc) {
      return acc + 1;
    }

    @Override
    public Long getResult(Long acc) {
      return acc;
    }

    @Override
    public Long merge(Long a, Long b) {
      return a + b;
    }
  }

  static final class Emit extends ProcessWindowFunction<Long, Row, String, TimeWindow> {
    @Override
    public void process(String key, Context context, Iterable<Long> counts, Collector<Row> out) {
      Row row = new Row();
      row.start = context.window().getStart();
      row.key = key;
      row.count = counts.iterator().next();
      out.collect(row);
    }
  }

  /** Discards the rows, keeping the count of each window (the MiniCluster is this JVM). */
  static final class CountingSink implements Sink<Row> {
    @Override
    public SinkWriter<Row> createWriter(WriterInitContext context) {
      return new SinkWriter<>() {
        @Override
        public void write(Row row, Context context) {
          Common.result(row.start, row.key, row.count);
        }

        @Override
        public void flush(boolean endOfInput) {}

        @Override
        public void close() {}
      };
    }
  }
}
