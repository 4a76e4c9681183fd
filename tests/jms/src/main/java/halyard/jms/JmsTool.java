package halyard.jms;

import jakarta.jms.BytesMessage;
import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Destination;
import jakarta.jms.JMSException;
import jakarta.jms.MapMessage;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.ObjectMessage;
import jakarta.jms.Queue;
import jakarta.jms.QueueBrowser;
import jakarta.jms.Session;
import jakarta.jms.StreamMessage;
import jakarta.jms.TemporaryQueue;
import jakarta.jms.TextMessage;
import jakarta.jms.Topic;
import jakarta.jms.TransactionRolledBackException;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.qpid.jms.JmsConnection;
import org.apache.qpid.jms.JmsConnectionFactory;
import org.apache.qpid.jms.JmsConnectionListener;
import org.apache.qpid.jms.message.JmsInboundMessageDispatch;

/**
 * A JMS client tool (Apache Qpid JMS, AMQP 1.0) driven by the Python tests in tests/amqp.
 *
 * <pre>
 * java -jar jms-tool.jar COMMAND [OPTIONS]
 *
 * Commands:
 *   produce      send --count messages to --queue or --topic
 *   consume      receive from --queue or --topic (plain, --durable, --shared, --selector)
 *   browse       list a queue's messages without consuming them (QueueBrowser)
 *   respond      answer --count requests from --queue to their JMSReplyTo
 *   request      send --count requests to --queue with a temporary reply queue, await replies
 *   unsubscribe  remove durable subscription --name of --client-id
 *
 * --gate (produce, consume): after connecting, print {"event":"gate"} and wait for a line on
 *   stdin before creating the session (so a test can kill a broker in between and see the
 *   connection fail over before any message moves).
 *
 * Connection options (every command):
 *   --url URL            amqp://127.0.0.1:61616 or failover:(amqp://a,amqp://b)?failover.maxReconnectAttempts=-1
 *   --user U --password P   log in (SASL PLAIN); without them Qpid JMS uses ANONYMOUS
 *   --sasl MECHS         restrict SASL mechanisms (amqp.saslMechanisms, or failover.nested.amqp.saslMechanisms)
 *   --client-id ID       JMS client id (needed by --durable)
 *
 * produce: --queue|--topic NAME --count N [--persistent|--non-persistent] [--priority P]
 *          [--priorities 0,9,4 (cycled)] [--ttl MS] [--delay MS] [--property k=v | k:int=v | k:long=v |
 *          k:double=v | k:bool=v ...; {seq} in v is the message's seq] [--property-cycle k=a,b,,c
 *          (message seq takes value seq % 4; an empty value leaves the property unset)] [--body TEXT (default msg-SEQ; {seq} is replaced)]
 *          [--body-size CHARS] [--type text|bytes|map|stream|object] [--run ID] [--start SEQ]
 *          [--transacted --commit-every K [--rollback] [--retry-rolled-back (resend a batch whose
 *          commit failed, every 200 ms, up to 600 times)]] [--sleep-ms MS]
 * consume: --queue|--topic NAME [--count N (0: subscribe and exit)] [--timeout-ms T (idle)]
 *          [--first-timeout-ms T] [--selector S] [--durable NAME] [--shared NAME] [--no-local]
 *          [--ack auto|client|dups] [--transacted --commit-every K [--rollback-first]]
 *          [--sleep-ms MS] [--unsubscribe]
 *
 * Output: one JSON object a line on stdout. Every line has "event": connected, interrupted,
 * restored, connection-failure, sent (printed only after send() returned), send-failed, commit,
 * commit-failed, rollback, received, browsed, replied, reply, subscribed, unsubscribed,
 * summary (last line, with counts), error (then exit code 1; "security": the exception is a
 * JMSSecurityException or a subclass). Exit code 0: no error; 1: an
 * exception ended the command; 3: some sends or commits failed but the command ran to its end;
 * 4: request did not get every reply.
 * </pre>
 */
public final class JmsTool {

    private static final Set<String> FLAGS = Set.of(
            "persistent", "non-persistent", "transacted", "rollback", "rollback-first", "no-local",
            "retry-rolled-back", "unsubscribe", "gate");

    private static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    private static final AtomicInteger RECONNECTS = new AtomicInteger();
    private static final AtomicInteger INTERRUPTIONS = new AtomicInteger();

    private final String command;
    private final Map<String, List<String>> opts;

    private JmsTool(String command, Map<String, List<String>> opts) {
        this.command = command;
        this.opts = opts;
    }

    public static void main(String[] args) {
        if (args.length == 0 || args[0].equals("--help") || args[0].equals("-h")) {
            System.err.println("usage: jms-tool produce|consume|browse|respond|request|unsubscribe [--option value ...]"
                    + " (see JmsTool.java)");
            System.exit(args.length == 0 ? 2 : 0);
        }
        int code;
        try {
            JmsTool tool = new JmsTool(args[0], parse(args));
            code = tool.run();
        } catch (Throwable t) {
            Map<String, Object> e = event("error");
            e.put("error", t.toString());
            // Qpid JMS throws subclasses (a failed SASL login: JMSSecuritySaslException): say whether
            // the exception is a JMSSecurityException at all.
            e.put("security", t instanceof jakarta.jms.JMSSecurityException);
            Throwable c = t.getCause();
            if (c != null) {
                e.put("cause", c.toString());
            }
            e.put("reconnects", RECONNECTS.get());
            emit(e);
            t.printStackTrace();
            code = 1;
        }
        System.out.flush();
        // Qpid JMS may leave non-daemon threads behind after a failed connection: exit hard.
        Runtime.getRuntime().halt(code);
    }

    private static Map<String, List<String>> parse(String[] args) {
        Map<String, List<String>> m = new HashMap<>();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument: " + a);
            }
            String k = a.substring(2);
            if (FLAGS.contains(k)) {
                m.computeIfAbsent(k, x -> new ArrayList<>()).add("true");
            } else {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("option --" + k + " needs a value");
                }
                m.computeIfAbsent(k, x -> new ArrayList<>()).add(args[++i]);
            }
        }
        return m;
    }

    // --- options -----------------------------------------------------------

    private String str(String k, String dflt) {
        List<String> v = opts.get(k);
        return v == null ? dflt : v.get(v.size() - 1);
    }

    private String req(String k) {
        String v = str(k, null);
        if (v == null) {
            throw new IllegalArgumentException("--" + k + " is required for " + command);
        }
        return v;
    }

    private long num(String k, long dflt) {
        String v = str(k, null);
        return v == null ? dflt : Long.parseLong(v);
    }

    private boolean flag(String k) {
        return opts.containsKey(k);
    }

    private List<String> all(String k) {
        return opts.getOrDefault(k, List.of());
    }

    // --- output ------------------------------------------------------------

    static Map<String, Object> event(String name) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("event", name);
        m.put("t_ms", System.currentTimeMillis());
        return m;
    }

    static synchronized void emit(Map<String, Object> m) {
        OUT.println(Json.write(m));
        OUT.flush();
    }

    // --- connection --------------------------------------------------------

    private Connection connect() throws JMSException {
        String url = req("url");
        String sasl = str("sasl", null);
        if (sasl != null) {
            String key = url.startsWith("failover:") ? "failover.nested.amqp.saslMechanisms" : "amqp.saslMechanisms";
            url += (url.contains("?") ? "&" : "?") + key + "=" + sasl;
        }
        JmsConnectionFactory f = new JmsConnectionFactory(url);
        String user = str("user", null);
        if (user != null) {
            f.setUsername(user);
            f.setPassword(str("password", ""));
        }
        Connection c = f.createConnection();
        String clientId = str("client-id", null);
        if (clientId != null) {
            c.setClientID(clientId);
        }
        c.setExceptionListener(e -> {
            Map<String, Object> ev = event("connection-error");
            ev.put("error", e.toString());
            emit(ev);
        });
        ((JmsConnection) c).addConnectionListener(new Listener());
        c.start();
        Map<String, Object> ev = event("connected");
        URI uri = ((JmsConnection) c).getConnectedURI();
        ev.put("uri", String.valueOf(uri));
        ev.put("command", command);
        emit(ev);
        if (flag("gate")) {
            emit(event("gate"));
            try {
                new java.io.BufferedReader(new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
            } catch (java.io.IOException e) {
                throw new IllegalStateException("reading the gate line", e);
            }
            Map<String, Object> g = event("gate-open");
            g.put("uri", String.valueOf(((JmsConnection) c).getConnectedURI()));
            g.put("reconnects", RECONNECTS.get());
            emit(g);
        }
        return c;
    }

    private static final class Listener implements JmsConnectionListener {
        @Override
        public void onConnectionEstablished(URI uri) {}

        @Override
        public void onConnectionFailure(Throwable t) {
            Map<String, Object> ev = event("connection-failure");
            ev.put("error", t.toString());
            emit(ev);
        }

        @Override
        public void onConnectionInterrupted(URI uri) {
            INTERRUPTIONS.incrementAndGet();
            Map<String, Object> ev = event("interrupted");
            ev.put("uri", String.valueOf(uri));
            emit(ev);
        }

        @Override
        public void onConnectionRestored(URI uri) {
            Map<String, Object> ev = event("restored");
            ev.put("uri", String.valueOf(uri));
            ev.put("reconnects", RECONNECTS.incrementAndGet());
            emit(ev);
        }

        @Override
        public void onInboundMessage(JmsInboundMessageDispatch d) {}

        @Override
        public void onSessionClosed(Session s, Throwable t) {}

        @Override
        public void onConsumerClosed(jakarta.jms.MessageConsumer c, Throwable t) {
            Map<String, Object> ev = event("consumer-closed");
            ev.put("error", String.valueOf(t));
            emit(ev);
        }

        @Override
        public void onProducerClosed(MessageProducer p, Throwable t) {
            Map<String, Object> ev = event("producer-closed");
            ev.put("error", String.valueOf(t));
            emit(ev);
        }
    }

    private Destination destination(Session s) throws JMSException {
        String q = str("queue", null);
        String t = str("topic", null);
        if ((q == null) == (t == null)) {
            throw new IllegalArgumentException("give exactly one of --queue and --topic");
        }
        return q != null ? s.createQueue(q) : s.createTopic(t);
    }

    private int run() throws Exception {
        switch (command) {
            case "produce":
                return produce();
            case "consume":
                return consume();
            case "browse":
                return browse();
            case "respond":
                return respond();
            case "request":
                return request();
            case "unsubscribe":
                return unsubscribe();
            default:
                throw new IllegalArgumentException("unknown command " + command);
        }
    }

    // --- produce -----------------------------------------------------------

    private Message build(Session s, long seq) throws JMSException {
        String type = str("type", "text");
        String body = str("body", "msg-{seq}").replace("{seq}", Long.toString(seq));
        long size = num("body-size", -1);
        if (size > body.length()) {
            StringBuilder b = new StringBuilder(body);
            while (b.length() < size) {
                b.append((char) ('a' + (b.length() % 26)));
            }
            body = b.toString();
        }
        Message m;
        switch (type) {
            case "text":
                m = s.createTextMessage(body);
                break;
            case "bytes": {
                BytesMessage b = s.createBytesMessage();
                b.writeBytes(body.getBytes(StandardCharsets.UTF_8));
                m = b;
                break;
            }
            case "map": {
                MapMessage mm = s.createMapMessage();
                mm.setString("body", body);
                mm.setLong("seq", seq);
                m = mm;
                break;
            }
            case "stream": {
                StreamMessage sm = s.createStreamMessage();
                sm.writeString(body);
                sm.writeLong(seq);
                m = sm;
                break;
            }
            case "object":
                m = s.createObjectMessage(body);
                break;
            default:
                throw new IllegalArgumentException("unknown --type " + type);
        }
        m.setLongProperty("seq", seq);
        String run = str("run", null);
        if (run != null) {
            m.setStringProperty("run", run);
        }
        List<String> props = new ArrayList<>(all("property"));
        for (String p : all("property-cycle")) {
            int eq = p.indexOf('=');
            if (eq < 0) {
                throw new IllegalArgumentException("--property-cycle wants k=v1,v2,..., got " + p);
            }
            String[] values = p.substring(eq + 1).split(",", -1);
            String v = values[(int) (seq % values.length)];
            if (!v.isEmpty()) {
                props.add(p.substring(0, eq) + "=" + v);
            }
        }
        for (String p : props) {
            int eq = p.indexOf('=');
            if (eq < 0) {
                throw new IllegalArgumentException("--property wants k=v, got " + p);
            }
            String k = p.substring(0, eq);
            String v = p.substring(eq + 1).replace("{seq}", Long.toString(seq));
            String kind = "string";
            int colon = k.indexOf(':');
            if (colon >= 0) {
                kind = k.substring(colon + 1);
                k = k.substring(0, colon);
            }
            switch (kind) {
                case "string": m.setStringProperty(k, v); break;
                case "int": m.setIntProperty(k, Integer.parseInt(v)); break;
                case "long": m.setLongProperty(k, Long.parseLong(v)); break;
                case "double": m.setDoubleProperty(k, Double.parseDouble(v)); break;
                case "bool": m.setBooleanProperty(k, Boolean.parseBoolean(v)); break;
                default: throw new IllegalArgumentException("unknown property type " + kind);
            }
        }
        String corr = str("correlation-id", null);
        if (corr != null) {
            m.setJMSCorrelationID(corr);
        }
        return m;
    }

    private int produce() throws Exception {
        long count = num("count", 1);
        long start = num("start", 0);
        boolean transacted = flag("transacted");
        long commitEvery = num("commit-every", count);
        boolean rollback = flag("rollback");
        boolean retry = flag("retry-rolled-back");
        long sleepMs = num("sleep-ms", 0);
        int[] priorities = null;
        if (str("priorities", null) != null) {
            String[] parts = str("priorities", null).split(",");
            priorities = new int[parts.length];
            for (int i = 0; i < parts.length; i++) {
                priorities[i] = Integer.parseInt(parts[i].trim());
            }
        }
        long sent = 0, failed = 0, committed = 0, commitFailures = 0, rolledBack = 0;
        Connection c = connect();
        try {
            Session s = transacted ? c.createSession(true, Session.SESSION_TRANSACTED)
                    : c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Destination d = destination(s);
            MessageProducer p = s.createProducer(d);
            p.setDeliveryMode(flag("non-persistent") ? DeliveryMode.NON_PERSISTENT : DeliveryMode.PERSISTENT);
            p.setPriority((int) num("priority", Message.DEFAULT_PRIORITY));
            p.setTimeToLive(num("ttl", 0));
            if (num("delay", 0) > 0) {
                p.setDeliveryDelay(num("delay", 0));
            }
            long seq = start;
            long end = start + count;
            while (seq < end) {
                long batchStart = seq;
                long batchEnd = transacted ? Math.min(end, seq + commitEvery) : seq + 1;
                for (int attempt = 1; ; attempt++) {
                    List<Map<String, Object>> batch = new ArrayList<>();
                    boolean ok = true;
                    for (long i = batchStart; i < batchEnd; i++) {
                        Message m = build(s, i);
                        int prio = priorities != null ? priorities[(int) (i % priorities.length)] : p.getPriority();
                        try {
                            p.send(m, p.getDeliveryMode(), prio, p.getTimeToLive());
                        } catch (JMSException e) {
                            Map<String, Object> ev = event("send-failed");
                            ev.put("seq", i);
                            ev.put("error", e.toString());
                            emit(ev);
                            failed++;
                            ok = false;
                            break;
                        }
                        Map<String, Object> ev = event("sent");
                        ev.put("seq", i);
                        ev.put("id", m.getJMSMessageID());
                        ev.put("priority", prio);
                        ev.put("tx", transacted);
                        ev.put("attempt", attempt);
                        emit(ev);
                        batch.add(ev);
                        sent++;
                        if (sleepMs > 0) {
                            Thread.sleep(sleepMs);
                        }
                    }
                    if (!transacted) {
                        break;
                    }
                    if (ok && rollback) {
                        s.rollback();
                        Map<String, Object> ev = event("rollback");
                        ev.put("from", batchStart);
                        ev.put("to", batchEnd - 1);
                        emit(ev);
                        rolledBack += batchEnd - batchStart;
                        break;
                    }
                    if (ok) {
                        try {
                            s.commit();
                            Map<String, Object> ev = event("commit");
                            ev.put("from", batchStart);
                            ev.put("to", batchEnd - 1);
                            ev.put("attempt", attempt);
                            emit(ev);
                            committed += batchEnd - batchStart;
                            break;
                        } catch (JMSException e) {
                            Map<String, Object> ev = event("commit-failed");
                            ev.put("from", batchStart);
                            ev.put("to", batchEnd - 1);
                            ev.put("error", e.toString());
                            ev.put("rolled_back", e instanceof TransactionRolledBackException);
                            emit(ev);
                            commitFailures++;
                        }
                    } else {
                        try {
                            s.rollback();
                        } catch (JMSException e) {
                            // the transaction is gone with the connection; the retry starts a new one
                        }
                    }
                    // A commit that failed while the connection was failing over: wait a little
                    // (the failover provider reconnects meanwhile) and send the batch again.
                    if (!retry || attempt >= 600) {
                        break;
                    }
                    Thread.sleep(200);
                }
                seq = batchEnd;
            }
            p.close();
        } finally {
            c.close();
        }
        Map<String, Object> sum = event("summary");
        sum.put("command", "produce");
        sum.put("sent", sent);
        sum.put("send_failed", failed);
        sum.put("committed", committed);
        sum.put("commit_failed", commitFailures);
        sum.put("rolled_back", rolledBack);
        sum.put("reconnects", RECONNECTS.get());
        sum.put("interruptions", INTERRUPTIONS.get());
        emit(sum);
        return failed > 0 || commitFailures > 0 ? 3 : 0;
    }

    // --- consume -----------------------------------------------------------

    static Map<String, Object> describe(String name, Message m) throws JMSException {
        Map<String, Object> ev = event(name);
        ev.put("id", m.getJMSMessageID());
        if (m.propertyExists("seq")) {
            ev.put("seq", m.getObjectProperty("seq"));
        }
        String type;
        Object body;
        if (m instanceof TextMessage) {
            type = "text";
            body = ((TextMessage) m).getText();
        } else if (m instanceof BytesMessage) {
            type = "bytes";
            BytesMessage b = (BytesMessage) m;
            byte[] buf = new byte[(int) b.getBodyLength()];
            b.readBytes(buf);
            body = new String(buf, StandardCharsets.UTF_8);
        } else if (m instanceof MapMessage) {
            type = "map";
            MapMessage mm = (MapMessage) m;
            Map<String, Object> map = new LinkedHashMap<>();
            for (Enumeration<?> e = mm.getMapNames(); e.hasMoreElements(); ) {
                String k = (String) e.nextElement();
                map.put(k, mm.getObject(k));
            }
            body = map;
        } else if (m instanceof StreamMessage) {
            type = "stream";
            StreamMessage sm = (StreamMessage) m;
            List<Object> list = new ArrayList<>();
            try {
                while (true) {
                    list.add(sm.readObject());
                }
            } catch (jakarta.jms.MessageEOFException eof) {
                // end of stream
            }
            body = list;
        } else if (m instanceof ObjectMessage) {
            type = "object";
            body = String.valueOf(((ObjectMessage) m).getObject());
        } else {
            type = "message";
            body = null;
        }
        ev.put("type", type);
        ev.put("body", body);
        if (body instanceof String) {
            ev.put("body_length", ((String) body).length());
        }
        Map<String, Object> props = new LinkedHashMap<>();
        for (Enumeration<?> e = m.getPropertyNames(); e.hasMoreElements(); ) {
            String k = (String) e.nextElement();
            props.put(k, m.getObjectProperty(k));
        }
        ev.put("props", props);
        ev.put("priority", m.getJMSPriority());
        ev.put("redelivered", m.getJMSRedelivered());
        ev.put("delivery_count", m.propertyExists("JMSXDeliveryCount") ? m.getIntProperty("JMSXDeliveryCount") : null);
        ev.put("destination", String.valueOf(m.getJMSDestination()));
        ev.put("reply_to", m.getJMSReplyTo() == null ? null : m.getJMSReplyTo().toString());
        ev.put("correlation_id", m.getJMSCorrelationID());
        ev.put("persistent", m.getJMSDeliveryMode() == DeliveryMode.PERSISTENT);
        ev.put("timestamp", m.getJMSTimestamp());
        ev.put("expiration", m.getJMSExpiration());
        ev.put("delivery_time", m.getJMSDeliveryTime());
        return ev;
    }

    private int consume() throws Exception {
        long count = num("count", -1);
        long timeoutMs = num("timeout-ms", 5000);
        long firstTimeoutMs = num("first-timeout-ms", timeoutMs);
        String selector = str("selector", null);
        String durable = str("durable", null);
        String shared = str("shared", null);
        boolean transacted = flag("transacted");
        long commitEvery = num("commit-every", 1);
        boolean rollbackFirst = flag("rollback-first");
        long sleepMs = num("sleep-ms", 0);
        String ack = str("ack", "auto");
        int ackMode;
        switch (ack) {
            case "auto": ackMode = Session.AUTO_ACKNOWLEDGE; break;
            case "client": ackMode = Session.CLIENT_ACKNOWLEDGE; break;
            case "dups": ackMode = Session.DUPS_OK_ACKNOWLEDGE; break;
            default: throw new IllegalArgumentException("unknown --ack " + ack);
        }
        long received = 0, committed = 0, rolledBack = 0;
        Connection c = connect();
        try {
            Session s = transacted ? c.createSession(true, Session.SESSION_TRANSACTED) : c.createSession(false, ackMode);
            Destination d = destination(s);
            MessageConsumer consumer;
            if (durable != null && shared != null && !"durable".equals(shared)) {
                throw new IllegalArgumentException("--durable NAME and --shared NAME: give one (shared durable: --durable NAME --shared durable)");
            }
            String subName = durable != null ? durable : shared;
            if (durable != null && "durable".equals(str("shared", null))) {
                consumer = s.createSharedDurableConsumer((Topic) d, durable, selector);
            } else if (durable != null) {
                consumer = s.createDurableConsumer((Topic) d, durable, selector, flag("no-local"));
            } else if (shared != null && "durable".equals(shared)) {
                throw new IllegalArgumentException("--shared durable needs --durable NAME");
            } else if (shared != null) {
                consumer = s.createSharedConsumer((Topic) d, shared, selector);
            } else {
                consumer = s.createConsumer(d, selector, flag("no-local"));
            }
            Map<String, Object> sub = event("subscribed");
            sub.put("destination", String.valueOf(d));
            sub.put("subscription", subName);
            emit(sub);
            boolean didRollback = false;
            long inBatch = 0;
            while (count < 0 || received < count) {
                Message m = consumer.receive(received == 0 ? firstTimeoutMs : timeoutMs);
                if (m == null) {
                    break;
                }
                received++;
                emit(describe("received", m));
                if (ackMode == Session.CLIENT_ACKNOWLEDGE && !transacted) {
                    m.acknowledge();
                }
                if (transacted && ++inBatch >= commitEvery) {
                    if (rollbackFirst && !didRollback) {
                        s.rollback();
                        didRollback = true;
                        rolledBack += inBatch;
                        emit(event("rollback"));
                    } else {
                        s.commit();
                        committed += inBatch;
                        emit(event("commit"));
                    }
                    inBatch = 0;
                }
                if (sleepMs > 0) {
                    Thread.sleep(sleepMs);
                }
            }
            if (transacted && inBatch > 0) {
                s.commit();
                committed += inBatch;
                emit(event("commit"));
            }
            consumer.close();
            if (flag("unsubscribe") && subName != null) {
                s.unsubscribe(subName);
                Map<String, Object> ev = event("unsubscribed");
                ev.put("subscription", subName);
                emit(ev);
            }
        } finally {
            c.close();
        }
        Map<String, Object> sum = event("summary");
        sum.put("command", "consume");
        sum.put("received", received);
        sum.put("committed", committed);
        sum.put("rolled_back", rolledBack);
        sum.put("reconnects", RECONNECTS.get());
        sum.put("interruptions", INTERRUPTIONS.get());
        emit(sum);
        return 0;
    }

    private int browse() throws Exception {
        long n = 0;
        Connection c = connect();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue(req("queue"));
            QueueBrowser b = str("selector", null) == null ? s.createBrowser(q) : s.createBrowser(q, str("selector", null));
            for (Enumeration<?> e = b.getEnumeration(); e.hasMoreElements(); ) {
                emit(describe("browsed", (Message) e.nextElement()));
                n++;
            }
            b.close();
        } finally {
            c.close();
        }
        Map<String, Object> sum = event("summary");
        sum.put("command", "browse");
        sum.put("browsed", n);
        emit(sum);
        return 0;
    }

    // --- request / reply ---------------------------------------------------

    private int respond() throws Exception {
        long count = num("count", 1);
        long timeoutMs = num("timeout-ms", 30000);
        long n = 0;
        Connection c = connect();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(req("queue")));
            MessageProducer anon = s.createProducer(null); // anonymous relay: the target comes per send
            emit(event("subscribed"));
            while (n < count) {
                Message m = consumer.receive(timeoutMs);
                if (m == null) {
                    break;
                }
                Destination replyTo = m.getJMSReplyTo();
                TextMessage r = s.createTextMessage("reply:" + ((TextMessage) m).getText());
                r.setJMSCorrelationID(m.getJMSMessageID());
                anon.send(replyTo, r);
                Map<String, Object> ev = event("replied");
                ev.put("request_id", m.getJMSMessageID());
                ev.put("reply_to", String.valueOf(replyTo));
                ev.put("reply_to_temporary", replyTo instanceof TemporaryQueue);
                emit(ev);
                n++;
            }
        } finally {
            c.close();
        }
        Map<String, Object> sum = event("summary");
        sum.put("command", "respond");
        sum.put("replied", n);
        emit(sum);
        return 0;
    }

    private int request() throws Exception {
        long count = num("count", 1);
        long timeoutMs = num("timeout-ms", 30000);
        long ok = 0;
        Connection c = connect();
        String tempName;
        boolean tempDeleted = false;
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TemporaryQueue tmp = s.createTemporaryQueue();
            tempName = tmp.getQueueName();
            Map<String, Object> t = event("temporary-queue");
            t.put("name", tempName);
            emit(t);
            MessageConsumer replies = s.createConsumer(tmp);
            MessageProducer p = s.createProducer(s.createQueue(req("queue")));
            for (long i = 0; i < count; i++) {
                TextMessage m = s.createTextMessage("req-" + i);
                m.setJMSReplyTo(tmp);
                long t0 = System.nanoTime();
                p.send(m);
                Message r = replies.receive(timeoutMs);
                Map<String, Object> ev = r == null ? event("reply-timeout") : describe("reply", r);
                ev.put("request_id", m.getJMSMessageID());
                ev.put("matches", r != null && m.getJMSMessageID().equals(r.getJMSCorrelationID()));
                ev.put("latency_us", (System.nanoTime() - t0) / 1000);
                emit(ev);
                if (r != null && m.getJMSMessageID().equals(r.getJMSCorrelationID())
                        && ("reply:req-" + i).equals(((TextMessage) r).getText())) {
                    ok++;
                }
            }
            replies.close();
            tmp.delete();
            tempDeleted = true;
        } finally {
            c.close();
        }
        Map<String, Object> sum = event("summary");
        sum.put("command", "request");
        sum.put("replies", ok);
        sum.put("temporary_queue", tempName);
        sum.put("temporary_queue_deleted", tempDeleted);
        emit(sum);
        return ok == count ? 0 : 4;
    }

    private int unsubscribe() throws Exception {
        Connection c = connect();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            s.unsubscribe(req("name"));
        } finally {
            c.close();
        }
        Map<String, Object> sum = event("summary");
        sum.put("command", "unsubscribe");
        sum.put("unsubscribed", req("name"));
        emit(sum);
        return 0;
    }

    // --- JSON --------------------------------------------------------------

    static final class Json {
        static String write(Object o) {
            StringBuilder b = new StringBuilder();
            write(b, o);
            return b.toString();
        }

        @SuppressWarnings("unchecked")
        private static void write(StringBuilder b, Object o) {
            if (o == null) {
                b.append("null");
            } else if (o instanceof String || o instanceof Character) {
                string(b, o.toString());
            } else if (o instanceof Boolean || o instanceof Integer || o instanceof Long
                    || o instanceof Short || o instanceof Byte) {
                b.append(o);
            } else if (o instanceof Double || o instanceof Float) {
                double d = ((Number) o).doubleValue();
                if (Double.isFinite(d)) {
                    b.append(d);
                } else {
                    string(b, Double.toString(d));
                }
            } else if (o instanceof Map) {
                b.append('{');
                boolean first = true;
                for (Map.Entry<String, Object> e : ((Map<String, Object>) o).entrySet()) {
                    if (!first) {
                        b.append(',');
                    }
                    first = false;
                    string(b, e.getKey());
                    b.append(':');
                    write(b, e.getValue());
                }
                b.append('}');
            } else if (o instanceof List) {
                b.append('[');
                boolean first = true;
                for (Object x : (List<Object>) o) {
                    if (!first) {
                        b.append(',');
                    }
                    first = false;
                    write(b, x);
                }
                b.append(']');
            } else if (o instanceof byte[]) {
                string(b, java.util.Base64.getEncoder().encodeToString((byte[]) o));
            } else {
                string(b, o.toString());
            }
        }

        private static void string(StringBuilder b, String s) {
            b.append('"');
            for (int i = 0; i < s.length(); i++) {
                char ch = s.charAt(i);
                switch (ch) {
                    case '"': b.append("\\\""); break;
                    case '\\': b.append("\\\\"); break;
                    case '\n': b.append("\\n"); break;
                    case '\r': b.append("\\r"); break;
                    case '\t': b.append("\\t"); break;
                    default:
                        if (ch < 0x20) {
                            b.append(String.format("\\u%04x", (int) ch));
                        } else {
                            b.append(ch);
                        }
                }
            }
            b.append('"');
        }
    }
}
