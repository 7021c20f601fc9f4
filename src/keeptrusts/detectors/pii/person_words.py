"""Hand-written word lists for the PERSON recognizer (cues, particles, stop words).

These are the recognizer's own lists. The evaluation generator (``scripts/eval_pii.py``) keeps its
own, separately written hard negatives; it reports how many of them also appear here.
"""

from __future__ import annotations


def _words(block: str) -> frozenset[str]:
    return frozenset(block.split())


# Honorifics and titles in several languages. A name right after one is very likely a person.
TITLES = _words(
    """
mr mrs ms miss mx dr doctor prof professor sir dame madam madame mme mlle monsieur herr frau fr
sr sra srta señor señora señorita sig sig.ra signor signora signorina dott dottore dott.ssa ing
avv pan pani dhr mevr shri smt sri shrimati kumari sheikh sheikha hajji haji ustadh rev
reverend fr father sister brother capt captain col colonel gen general lt sgt sen senator rep
gov judge justice officer agent coach uncle aunt auntie
"""
)

# Phrases that announce a person (matched against the lower-cased words before a candidate).
STRONG_CUES = (
    "my name is", "name is", "i am", "i'm", "im", "this is", "it's", "its", "dear", "hi", "hello",
    "hey", "thanks", "thank you", "regards", "regards,", "sincerely", "cheers", "best", "signed",
    "yours", "from:", "to:", "cc:", "attn", "attn:", "attention", "named", "called", "call me",
    "goes by", "patient", "employee", "customer", "client", "candidate", "applicant", "tenant",
    "colleague", "coworker", "co-worker", "manager", "boss", "wife", "husband", "son", "daughter",
    "mother", "father", "mom", "dad", "brother", "sister", "friend", "partner", "neighbour",
    "neighbor", "nurse", "teacher", "student", "user", "member", "author", "assignee", "owner",
    "reviewer", "contact", "recipient", "sender", "passenger", "guest", "mr", "mrs", "ms", "dr",
    "prof", "professor", "ceo", "cto", "cfo", "vp", "director", "lead", "engineer", "intern",
    "landlord", "lawyer", "attorney", "accountant", "doctor", "surgeon", "therapist",
)  # fmt: skip

WEAK_CUES = _words(
    """
ask ping tell email e-mail mail message call text meet met contact cc bcc assign assigned loop
with by from to for and or invite introduce thank thanks congratulate remind notify forward
hire hired fire fired pay paid visit visited help helped see saw told asked about against
between like per via reply respond write wrote send sent give gave let
"""
)

# Words before a candidate that make it a thing, not a person.
NEGATIVE_PRECEDERS = _words(
    """
the a an our your their its using use used uses install installed deploy deployed run running
ran upgrade upgraded configure configured enable enabled disable disabled migrate migrated
import imported restart restarted open opened launch launched
"""
)

LOCATION_PRECEDERS = _words(
    """
in at near into onto towards toward visit visiting
"""
)

# Words after a candidate that suggest a person.
PERSON_FOLLOWERS = _words(
    """
said says wrote writes asked asks told replied replies mentioned thinks thought agreed agrees
wants wanted needs needed is was will would has had and who whose from at joined joins works
worked called emailed texted messaged approved approved signed reported reports confirmed
"""
)

# Words after a candidate that make it a place, organisation, product or event.
THING_FOLLOWERS = _words(
    """
station street st road rd avenue ave boulevard blvd lane square park bridge hall tower building
house palace castle cathedral church abbey temple mosque museum gallery theatre theater stadium
arena airport harbour harbor port beach bay lake river mountain mount mt valley falls island
islands peninsula county city town village district province state region university college
school academy institute hospital clinic centre center foundation society association council
ministry department agency bank group holdings partners capital ventures labs lab studio
studios systems solutions technologies technology software inc incorporated ltd limited llc llp
plc gmbh ag sa sas srl spa bv nv oy ab corp corporation co company companies industries
international global enterprises consulting model series edition pro max mini plus air ultra
cloud api sdk cli server servers service services cluster clusters pipeline pipelines job jobs
build builds plugin plugins operator dashboard dashboards database db instance instances node
nodes pod pods container containers queue topic bucket stack app apps application platform
framework library package module engine runtime driver console portal repo repository branch
release version workflow workflows action actions agent bot script config configuration file
files logs log metrics query queries index schema table tables chart charts helm rule rules
policy policies account accounts license licence subscription plan tier region zone endpoint
endpoints award prize act law treaty festival conference summit expo cup league championship
olympics games war syndrome disease effect principle theorem equation algorithm method hotel
restaurant cafe bar pub mall market store shop airlines airways express motors sarl sàrl kg ohg
ug ltda eireli sp spółka fundacja stiftung fondazione fundación fundação grupo groep gruppe
gruppo groupe compañía companhia compagnie società société sociedad industrias industries
industrie asociados associates associati associés sons fils figli hijos
"""
)

# Name particles that may sit inside a name ("Ludwig van Beethoven", "Abdullah bin Salman").
PARTICLES = _words(
    """
van von de der den del della delle dei di da das dos du la le lo ter ten te bin binti ibn bint
al el ben abu ab ap af zu y e mac st
"""
)

# Tokens that are never person names in gateway traffic: software, products, companies, places,
# calendar words. Keep it to words that are much more often a thing than a person.
STOPLIST = _words(
    """
kubernetes k8s kubectl docker podman terraform pulumi ansible puppet chef vagrant packer nomad
consul vault grafana prometheus loki tempo jaeger kibana elasticsearch opensearch logstash
fluentd fluentbit splunk datadog newrelic sentry pagerduty opsgenie statuspage jira confluence
bitbucket github gitlab gitea circleci travis teamcity bamboo argo argocd flux spinnaker tekton
airflow dagster prefect luigi kafka zookeeper rabbitmq activemq pulsar nats redis memcached
postgres postgresql mysql mariadb sqlite oracle mongodb mongo cassandra couchdb couchbase
dynamodb cockroachdb clickhouse snowflake bigquery redshift databricks spark hadoop hive presto
trino flink beam nginx apache httpd tomcat jetty caddy traefik envoy istio linkerd haproxy
cloudflare akamai fastly vercel netlify heroku aws azure gcp ec2 s3 lambda cloudwatch
cloudfront fargate eks aks gke openshift rancher linux ubuntu debian fedora centos rhel alpine
arch windows macos ios android ipados watchos chromeos unix freebsd openbsd python java
javascript typescript golang rust kotlin scala clojure haskell erlang elixir perl php lua dart
matlab fortran cobol node nodejs deno bun npm yarn pnpm pip pipenv poetry conda virtualenv
maven gradle sbt cargo rustc gcc clang llvm cmake bazel make webpack vite rollup esbuild babel
eslint prettier jest mocha pytest junit selenium cypress playwright puppeteer storybook react
vue angular svelte nextjs nuxt remix gatsby django flask fastapi rails laravel symfony spring
springboot express nestjs dotnet aspnet blazor electron tauri flutter xamarin unity unreal
godot blender figma sketch photoshop illustrator indesign lightroom premiere excel word
powerpoint outlook onenote sharepoint onedrive teams skype zoom slack discord telegram whatsapp
signal viber wechat line messenger gmail hotmail yahoo protonmail notion trello asana monday
clickup airtable zapier salesforce hubspot zendesk intercom freshdesk servicenow workday sap
netsuite quickbooks xero stripe paypal braintree adyen klarna square shopify magento
woocommerce wordpress drupal joomla wix squarespace google alphabet microsoft apple amazon meta
facebook instagram twitter tiktok snapchat linkedin youtube netflix spotify uber lyft airbnb
openai anthropic chatgpt gpt gemini llama mistral copilot bard bing nvidia intel amd qualcomm
arm samsung huawei xiaomi sony lenovo hp asus acer ibm cisco juniper vmware citrix broadcom
toyota honda bmw audi volkswagen porsche ferrari nissan hyundai volvo peugeot renault fiat
skoda boeing airbus siemens bosch philips ikea lego nike adidas puma zara walmart costco target
starbucks mcdonalds cocacola pepsi nestle unilever pfizer moderna iphone ipad macbook imac
airpods pixel galaxy kindle cortana playstation xbox nintendo switch surface thinkpad
chromebook raspberry arduino grpc graphql rest json yaml toml xml html css sql nosql oauth saml
jwt ldap kerberos ssh ssl tls https http tcp udp dns dhcp vpn vlan bgp ospf smtp imap pop3 ftp
sftp api sdk cli gui ide ci cd devops sre mlops llm rag gpu cpu ram ssd hdd usb pandas numpy
scipy sklearn tensorflow pytorch keras jupyter colab anaconda monday tuesday wednesday thursday
friday saturday sunday january february march july september october november december q1 q2 q3
q4 eu uk usa us uae emea apac latam london paris berlin madrid rome amsterdam rotterdam
brussels vienna zurich geneva munich hamburg frankfurt cologne warsaw krakow prague budapest
lisbon porto barcelona valencia seville dublin edinburgh glasgow manchester liverpool
birmingham leeds bristol oxford cambridge toronto vancouver montreal ottawa calgary melbourne
brisbane perth auckland mumbai delhi bangalore bengaluru chennai hyderabad kolkata pune tokyo
osaka kyoto beijing shanghai shenzhen singapore seoul taipei bangkok jakarta manila dubai
riyadh cairo istanbul ankara moscow kyiv johannesburg lagos nairobi chicago boston seattle
denver dallas houston atlanta miami phoenix detroit portland brooklyn manhattan california
texas florida ohio oregon nevada arizona germany france spain italy netherlands poland india
brazil australia canada china japan mexico argentina portugal belgium austria switzerland
sweden norway denmark finland ireland scotland wales england russia ukraine turkey egypt korea
vietnam
"""
)

# Product and place names that are also common person names: never a PERSON on their own ("ask
# Claude", "the Jenkins job", "a Tesla"), but fine inside a longer name ("Claude Dubois").
AMBIGUOUS = _words(
    """
ruby julia pascal august ford swift mercedes austin israel sydney adelaide milan claude jenkins
tesla dell alexa siri kia alexa cortana victoria florence georgia jordan chelsea brooklyn
sierra aurora luna nova apollo atlas hermes mercury juno phoenix orion athena nike ajax django
"""
)

# Frequent English function words: never part of a name, even capitalised at a sentence start
# (the name lexicon has noise such as "The" ranked as a first name in Taiwan).
FUNCTION_WORDS = _words(
    """
the a an and or but nor so yet if then else when while where why how what which who whom whose
this that these those there here it its it's i me my mine we us our ours you your yours he him
his she her hers they them their theirs is are was were be been being am do does did done have
has had having can could would shall should might must not no yes of to in on at by for with
from into onto over under about above below after before between through during until up down
out off again further once all any both each few more most other some such only own same than
too very just also as via please thanks thank hi hello hey dear regards best kind cheers okay
ok let lets let's get got make made see saw need needs want wants like new
"""
)

# First words of place names ("San Diego", "Port Jessica", "Nowy Dwór", "Bad Homburg").
PLACE_PREFIXES = _words(
    """
san santa santo são sao saint sainte st ste sankt bad nowy nowa nowe stary stara north south
east west new old upper lower great little port fort lake mount mt monte villa ciudad puerto
porto castel castello castle isola isle cape cabo glen las los rio vila casa kings queens
"""
)
