// Country calling codes for the picker (ITU-T E.164). `trunk` is the national trunk prefix
// people often type in front of a national number (the package's `toE164` drops it), absent
// where the leading 0 is part of the number (Italy) or there is none.
// One row a country: ISO code, calling code, trunk prefix ("-" for none), English name.
const TABLE = `
  AR 54  0 Argentina
  AU 61  0 Australia
  AT 43  0 Austria
  BE 32  0 Belgium
  BR 55  0 Brazil
  CA 1   1 Canada
  CL 56  - Chile
  CN 86  0 China
  CO 57  - Colombia
  CZ 420 - Czechia
  DK 45  - Denmark
  EG 20  0 Egypt
  FI 358 0 Finland
  FR 33  0 France
  DE 49  0 Germany
  GH 233 0 Ghana
  GR 30  - Greece
  IN 91  0 India
  ID 62  0 Indonesia
  IE 353 0 Ireland
  IL 972 0 Israel
  IT 39  - Italy
  JP 81  0 Japan
  KE 254 0 Kenya
  MY 60  0 Malaysia
  MX 52  - Mexico
  MA 212 0 Morocco
  NL 31  0 Netherlands
  NZ 64  0 New Zealand
  NG 234 0 Nigeria
  NO 47  - Norway
  PK 92  0 Pakistan
  PE 51  - Peru
  PH 63  0 Philippines
  PL 48  - Poland
  PT 351 - Portugal
  RO 40  0 Romania
  SA 966 0 Saudi Arabia
  SG 65  - Singapore
  ZA 27  0 South Africa
  KR 82  0 South Korea
  ES 34  - Spain
  SE 46  0 Sweden
  CH 41  0 Switzerland
  TH 66  0 Thailand
  TR 90  0 Türkiye
  UA 380 0 Ukraine
  AE 971 0 United Arab Emirates
  GB 44  0 United Kingdom
  US 1   1 United States
  VN 84  0 Vietnam
`;

export const COUNTRIES = TABLE.trim()
  .split("\n")
  .map((row) => {
    const [iso, dial, trunk, ...name] = row.trim().split(/\s+/);
    const country = { iso, name: name.join(" "), dial };
    if (trunk !== "-") country.trunk = trunk;
    return country;
  });

/// The country to preselect: the region of the browser's language, else the United States.
export function guessCountry(languages) {
  for (const tag of languages || []) {
    const m = /^[a-z]{2,3}-([A-Z]{2})\b/i.exec(tag);
    if (m) {
      const iso = m[1].toUpperCase();
      if (COUNTRIES.some((c) => c.iso === iso)) return iso;
    }
  }
  return "US";
}
