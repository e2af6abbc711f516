// A RocketMQ-remoting client written against the JDK alone (no RocketMQ jar is reachable from
// CI): JSSE TLS as a RocketMQ client with -Dtls.enable=true in test mode uses it (trust any
// server certificate), and request signing computed the way RocketMQ's AclClientRPCHook and
// AclUtils compute it (TreeMap of the ext fields, values concatenated, then the body,
// HmacSHA1, Base64). An independent implementation of both, in Java, for the interop tests.
//
// usage: java TlsSignedClient.java host port tls|plain accessKey secretKey topic
// prints one JSON line per step.

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.ByteArrayOutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.util.Base64;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;

public class TlsSignedClient {
    static int opaque = 0;

    static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    static String sign(String secretKey, Map<String, String> ext, byte[] body) throws Exception {
        TreeMap<String, String> sorted = new TreeMap<>(ext);
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String, String> e : sorted.entrySet()) {
            if (!"Signature".equals(e.getKey())) sb.append(e.getValue());
        }
        ByteArrayOutputStream content = new ByteArrayOutputStream();
        content.write(sb.toString().getBytes(StandardCharsets.UTF_8));
        if (body != null) content.write(body);
        Mac mac = Mac.getInstance("HmacSHA1");
        mac.init(new SecretKeySpec(secretKey.getBytes(StandardCharsets.UTF_8), "HmacSHA1"));
        return Base64.getEncoder().encodeToString(mac.doFinal(content.toByteArray()));
    }

    static String[] call(Socket s, int code, Map<String, String> ext, byte[] body) throws Exception {
        StringBuilder h = new StringBuilder("{\"code\":").append(code).append(",\"extFields\":{");
        boolean first = true;
        for (Map.Entry<String, String> e : ext.entrySet()) {
            if (!first) h.append(',');
            first = false;
            h.append(quote(e.getKey())).append(':').append(quote(e.getValue()));
        }
        h.append("},\"flag\":0,\"language\":\"JAVA\",\"opaque\":").append(++opaque)
            .append(",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":409}");
        byte[] header = h.toString().getBytes(StandardCharsets.UTF_8);
        int bodyLen = body == null ? 0 : body.length;
        DataOutputStream out = new DataOutputStream(s.getOutputStream());
        out.writeInt(4 + header.length + bodyLen);
        out.writeInt(header.length);
        out.write(header);
        if (body != null) out.write(body);
        out.flush();
        DataInputStream in = new DataInputStream(s.getInputStream());
        int length = in.readInt();
        int headerLen = in.readInt() & 0xFFFFFF;
        byte[] rh = new byte[headerLen];
        in.readFully(rh);
        byte[] rb = new byte[length - 4 - headerLen];
        in.readFully(rb);
        String headerText = new String(rh, StandardCharsets.UTF_8);
        Matcher m = Pattern.compile("\"code\":(\\d+)").matcher(headerText);
        m.find();
        return new String[] {m.group(1), new String(rb, StandardCharsets.UTF_8), headerText};
    }

    static void report(String step, String[] r, String extra) {
        System.out.println("{\"step\":" + quote(step) + ",\"code\":" + r[0] + ",\"body\":"
            + quote(r[1]) + ",\"header\":" + quote(r[2]) + extra + "}");
    }

    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        boolean tls = args[2].equals("tls");
        String ak = args[3], sk = args[4], topic = args[5];
        Socket s;
        String protocol = "none";
        if (tls) {
            TrustManager[] trustAll = {new X509TrustManager() {
                public void checkClientTrusted(X509Certificate[] c, String a) {}
                public void checkServerTrusted(X509Certificate[] c, String a) {}
                public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
            }};
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(null, trustAll, new SecureRandom());
            SSLSocket ss = (SSLSocket) ctx.getSocketFactory().createSocket(host, port);
            ss.startHandshake();
            protocol = ss.getSession().getProtocol() + " " + ss.getSession().getCipherSuite();
            s = ss;
        } else {
            s = new Socket(host, port);
        }
        String proto = ",\"tls\":" + quote(protocol);
        report("route", call(s, 105, Map.of("topic", topic), null), proto);
        Map<String, String> kv = new TreeMap<>(Map.of("namespace", "java", "key", "k", "value", "v"));
        report("put_unsigned", call(s, 100, kv, null), proto);
        Map<String, String> signed = new TreeMap<>(kv);
        signed.put("AccessKey", ak);
        signed.put("Signature", sign(sk, signed, null));
        report("put_signed", call(s, 100, signed, null), proto);
        byte[] body = "orderMessageEnable=false".getBytes(StandardCharsets.UTF_8);
        Map<String, String> cfg = new TreeMap<>();
        cfg.put("AccessKey", ak);
        cfg.put("Signature", sign(sk, cfg, body));
        report("update_config_signed", call(s, 318, cfg, body), proto);
        Map<String, String> tampered = new TreeMap<>(cfg);
        report("update_config_tampered", call(s, 318, tampered, "orderMessageEnable=true".getBytes(StandardCharsets.UTF_8)), proto);
        s.close();
    }
}
