// Country calling codes for the picker (ITU-T E.164). `trunk` is the national trunk prefix
// people often type in front of a national number (the package's `toE164` drops it), absent
// where the leading 0 is part of the number (Italy) or there is none.
export const COUNTRIES = [
  { iso: "AR", name: "Argentina", dial: "54", trunk: "0" },
  { iso: "AU", name: "Australia", dial: "61", trunk: "0" },
  { iso: "AT", name: "Austria", dial: "43", trunk: "0" },
  { iso: "BE", name: "Belgium", dial: "32", trunk: "0" },
  { iso: "BR", name: "Brazil", dial: "55", trunk: "0" },
  { iso: "CA", name: "Canada", dial: "1", trunk: "1" },
  { iso: "CL", name: "Chile", dial: "56" },
  { iso: "CN", name: "China", dial: "86", trunk: "0" },
  { iso: "CO", name: "Colombia", dial: "57" },
  { iso: "CZ", name: "Czechia", dial: "420" },
  { iso: "DK", name: "Denmark", dial: "45" },
  { iso: "EG", name: "Egypt", dial: "20", trunk: "0" },
  { iso: "FI", name: "Finland", dial: "358", trunk: "0" },
  { iso: "FR", name: "France", dial: "33", trunk: "0" },
  { iso: "DE", name: "Germany", dial: "49", trunk: "0" },
  { iso: "GH", name: "Ghana", dial: "233", trunk: "0" },
  { iso: "GR", name: "Greece", dial: "30" },
  { iso: "IN", name: "India", dial: "91", trunk: "0" },
  { iso: "ID", name: "Indonesia", dial: "62", trunk: "0" },
  { iso: "IE", name: "Ireland", dial: "353", trunk: "0" },
  { iso: "IL", name: "Israel", dial: "972", trunk: "0" },
  { iso: "IT", name: "Italy", dial: "39" },
  { iso: "JP", name: "Japan", dial: "81", trunk: "0" },
  { iso: "KE", name: "Kenya", dial: "254", trunk: "0" },
  { iso: "MY", name: "Malaysia", dial: "60", trunk: "0" },
  { iso: "MX", name: "Mexico", dial: "52" },
  { iso: "MA", name: "Morocco", dial: "212", trunk: "0" },
  { iso: "NL", name: "Netherlands", dial: "31", trunk: "0" },
  { iso: "NZ", name: "New Zealand", dial: "64", trunk: "0" },
  { iso: "NG", name: "Nigeria", dial: "234", trunk: "0" },
  { iso: "NO", name: "Norway", dial: "47" },
  { iso: "PK", name: "Pakistan", dial: "92", trunk: "0" },
  { iso: "PE", name: "Peru", dial: "51" },
  { iso: "PH", name: "Philippines", dial: "63", trunk: "0" },
  { iso: "PL", name: "Poland", dial: "48" },
  { iso: "PT", name: "Portugal", dial: "351" },
  { iso: "RO", name: "Romania", dial: "40", trunk: "0" },
  { iso: "SA", name: "Saudi Arabia", dial: "966", trunk: "0" },
  { iso: "SG", name: "Singapore", dial: "65" },
  { iso: "ZA", name: "South Africa", dial: "27", trunk: "0" },
  { iso: "KR", name: "South Korea", dial: "82", trunk: "0" },
  { iso: "ES", name: "Spain", dial: "34" },
  { iso: "SE", name: "Sweden", dial: "46", trunk: "0" },
  { iso: "CH", name: "Switzerland", dial: "41", trunk: "0" },
  { iso: "TH", name: "Thailand", dial: "66", trunk: "0" },
  { iso: "TR", name: "Türkiye", dial: "90", trunk: "0" },
  { iso: "UA", name: "Ukraine", dial: "380", trunk: "0" },
  { iso: "AE", name: "United Arab Emirates", dial: "971", trunk: "0" },
  { iso: "GB", name: "United Kingdom", dial: "44", trunk: "0" },
  { iso: "US", name: "United States", dial: "1", trunk: "1" },
  { iso: "VN", name: "Vietnam", dial: "84", trunk: "0" },
];

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
