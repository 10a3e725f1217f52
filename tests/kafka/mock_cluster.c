/* mock_cluster: librdkafka's mock Kafka cluster (rdkafka_mock.h) as a
 * process of its own, for end-to-end tests and benchmarks that run the
 * real outbox-relay binary against it. This is librdkafka's in-memory
 * mock, not an Apache Kafka broker.
 *
 *   mock_cluster [-b BROKERS] [-t TOPIC:PARTITIONS]...
 *
 * Prints the bootstrap servers ("127.0.0.1:PORT,...") as one line on
 * standard output, then serves until SIGTERM or SIGINT and exits 0.
 * Topics not created with -t are auto-created on first use (4 partitions).
 * Faults for the chaos tests: SIGUSR1 takes every broker down (connections
 * cut, new ones refused; the data stays), SIGUSR2 brings them back up.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
    (void)rk;
    if (level <= 3)
        fprintf(stderr, "mock_cluster: %s: %s\n", fac, buf);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: mock_cluster [-b BROKERS] [-t TOPIC:PARTITIONS]...\n");
    return 2;
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *spec)
{
    char name[256];
    const char *colon = strrchr(spec, ':');
    int parts = colon ? atoi(colon + 1) : 0;
    if (!colon || parts < 1 || (size_t)(colon - spec) >= sizeof name)
        return -1;
    snprintf(name, sizeof name, "%.*s", (int)(colon - spec), spec);
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, name, parts, 1);
    if (err)
        fprintf(stderr, "mock_cluster: topic %s: %s\n", name,
                rd_kafka_err2str(err));
    return err ? -1 : 0;
}

int main(int argc, char **argv)
{
    int brokers = 3, opt;
    /* Block the signals before librdkafka starts its threads, so they all
     * inherit the mask and sigwait() below receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "mock_cluster: %s\n", err);
        return 1;
    }
    while ((opt = getopt(argc, argv, "b:t:")) != -1)
        if (opt == 'b')
            brokers = atoi(optarg);
        else if (opt != 't')
            return usage();
    if (brokers < 1)
        return usage();
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "mock_cluster: cannot create the cluster\n");
        return 1;
    }
    optind = 1;
    while ((opt = getopt(argc, argv, "b:t:")) != -1)
        if (opt == 't' && create_topic(mc, optarg) != 0)
            return usage();
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && (sig == SIGUSR1 || sig == SIGUSR2)) {
        rd_kafka_resp_err_t e = sig == SIGUSR1
                                    ? rd_kafka_mock_broker_set_down(mc, -1)
                                    : rd_kafka_mock_broker_set_up(mc, -1);
        if (e)
            fprintf(stderr, "mock_cluster: brokers %s: %s\n",
                    sig == SIGUSR1 ? "down" : "up", rd_kafka_err2str(e));
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
