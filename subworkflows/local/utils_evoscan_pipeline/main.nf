//
// What main.nf checks before any task runs: the parameters against nextflow_schema.json and the
// samplesheet against the rules of assets/schema_input.json, each problem one line that names it.
// (nf-core pipelines do this with the nf-schema plugin; evoscan runs without plugins.)
//

// The parameters of nextflow_schema.json: name -> its JSON-schema spec (type, enum, pattern, range).
def parameterSpecs(Path schemaFile) {
    def groups = schemaFile.splitJson(path: '$defs') as List<Map>
    return groups.inject([:]) { specs, group -> specs + (((group['value'] as Map)['properties']) as Map) } as Map
}

// Problems with the parameters: values of the wrong type, outside their enum, pattern or range.
// A number may arrive as text (`1e-5` in 24.10; every value under the strict parser of 26.04).
def parameterErrors(Map given, Map specs) {
    def problems = specs.keySet().findAll { name -> given[name] != null }
        .collect { name -> parameterError(name as String, given[name], specs[name] as Map) }
    return problems.findAll { problem -> problem }
}

def parameterError(String name, Object value, Map spec) {
    def shown = "--${name} ${value}"
    def type = spec['type']
    def text = value.toString()
    if (value instanceof Boolean || (type != 'boolean' && text == 'true')) {  // `--model` given without a value
        return "--${name}: a value is needed"
    }
    if (type == 'integer' && !text.isInteger() && !(text ==~ /-?\d+/)) {
        return "${shown}: not a whole number"
    }
    if (type == 'number' && !(text ==~ /[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/)) {
        return "${shown}: not a number"
    }
    def number = type == 'integer' || type == 'number'
    if (spec['enum'] && !(spec['enum'] as List<String>).contains(text)) {
        return "${shown}: must be one of ${(spec['enum'] as List).join(', ')}"
    }
    if (spec['pattern'] && !(text ==~ spec['pattern'].toString())) {
        return "${shown}: does not match ${spec['pattern']}"
    }
    if (number && spec['minimum'] != null && (text as BigDecimal) < (spec['minimum'] as BigDecimal)) {
        return "${shown}: must be at least ${spec['minimum']}"
    }
    if (number && spec['maximum'] != null && (text as BigDecimal) > (spec['maximum'] as BigDecimal)) {
        return "${shown}: must be at most ${spec['maximum']}"
    }
    if (number && spec['exclusiveMinimum'] != null && (text as BigDecimal) <= (spec['exclusiveMinimum'] as BigDecimal)) {
        return "${shown}: must be above ${spec['exclusiveMinimum']}"
    }
    if (number && spec['exclusiveMaximum'] != null && (text as BigDecimal) >= (spec['exclusiveMaximum'] as BigDecimal)) {
        return "${shown}: must be below ${spec['exclusiveMaximum']}"
    }
    return ''
}

// Parameters written with dashes or in camelCase (--embed-chunks, --embedChunks): Nextflow keeps
// them apart from --embed_chunks, so the run would silently use the default.
def misspelledParameters(Map given, Map specs) {
    def known = specs.keySet()
    return given.keySet().findAll { name -> !known.contains(name) && known.contains(snakeCase(name as String)) }
        .collect { name -> "--${name}: evoscan's parameters are written with underscores: --${snakeCase(name as String)}" }
}

// Options of a language-model backend given with another (the embed tasks would refuse them), a
// custom architecture without its checkpoint, and the hf backend without its model.
def backendOptionErrors(Map given) {
    def models = ['evo2', 'hf']
    def owners = [weights: ['evo2'], model_config: ['evo2'], speedups: ['evo2'], model: models, layer: models, pooling: models]
    def problems = owners.keySet().findAll { name -> given[name] != null && !(given.backend in owners[name]) }
        .collect { name ->
            def backends = owners[name] as List<String>
            def of = backends.size() > 1 ? "the ${backends.join(' and ')} backends" : "the ${backends[0]} backend"
            "--${name} is an option of ${of}, not of ${given.backend}; add ${backends.collect { b -> '--backend ' + b }.join(' or ')}"
        }.toList()
    def noWeights = given.backend == 'evo2' && given.model_config && !given.weights
    def noModel = given.backend == 'hf' && !given.model
    def missing = [
        noWeights ? '--model_config needs --weights: the checkpoint made with that architecture' : null,
        noModel ? '--backend hf needs --model DIR (a local Hugging Face model directory)' : null,
    ].findAll { problem -> problem != null }.toList() as List<String>
    return problems + missing
}

// Parameters the schema does not know at all (another pipeline's, an institutional config's):
// worth a warning.
def unknownParameters(Map given, Map specs) {
    def known = specs.keySet()
    return given.keySet().findAll { name -> !known.contains(snakeCase(name as String)) }
}

def snakeCase(String name) {
    return name.replace('-', '_').replaceAll('([a-z0-9])([A-Z])', '$1_$2').toLowerCase()
}

// The samplesheet's rows as [meta, sequences, [gtf] or [], [regions] or []], relative paths read
// from the samplesheet's own folder; the first problem found stops the run with one line.
def samplesheetRows(Path sheet, Path sheetSchema) {
    def columns = ['sample', 'fasta', 'genome', 'gtf', 'genes', 'gene_type', 'regions']
    def patterns = (sheetSchema.splitJson(path: 'items.properties') as List<Map>)
        .inject([:]) { found, column -> found + [(column['key']): ((column['value'] as Map)['pattern'])] } as Map<String, String>
    // Nextflow's CSV reader: a quoted field may hold commas ("VIM,DES")
    def lines = sheet.splitCsv(quote: '"') as List<List<String>>
    if (!lines) {
        error("samplesheet ${sheet}: empty; the first line names the columns (${columns.join(',')}), then one row per gene set")
    }
    def header = lines.first()
    def names = header.collect { name -> name.trim() }
    def unknown = names.findAll { name -> !columns.contains(name) }
    if (!names.contains('sample') || !(names.contains('fasta') || names.contains('genome')) || unknown) {
        error("samplesheet ${sheet}: the header line must name a 'sample' column and a 'fasta' or 'genome' column, from ${columns.join(',')}" + (unknown ? "; unknown column(s): ${unknown.join(',')}" : "; it has: ${names.join(',')}"))
    }
    def rows = lines.tail().withIndex().collect { cells, i -> samplesheetRow(sheet, "samplesheet ${sheet} line ${i + 2}", header, cells, patterns) }
    if (!rows) {
        error("samplesheet ${sheet}: no rows under the header; add one row per gene set")
    }
    rows.groupBy { row -> (row[0] as Map)['id'] }.each { id, same ->
        if (same.size() > 1) {
            error("samplesheet ${sheet}: sample '${id}' is on ${same.size()} rows; each sample needs its own name (it names the output folder)")
        }
    }
    return rows
}

def samplesheetRow(Path sheet, String where, List<String> header, List<String> cells, Map<String, String> patterns) {
    if (cells.size() != header.size()) {
        error("${where}: ${cells.size()} fields where the header has ${header.size()} (${header.join(',')})")
    }
    def r = header.indices.inject([:]) { found, i -> cells[i]?.trim() ? found + [(header[i].trim()): cells[i].trim()] : found } as Map<String, String>
    def id = r['sample']
    if (!id) {
        error("${where}: no sample name; each row needs one (it names the output folder)")
    }
    // assets/schema_input.json: names without spaces, files by their extensions, no leading . or - in a sample
    r.each { column, cell ->
        if (patterns[column] && !(cell ==~ patterns[column])) {
            error("${where}: ${column} '${cell}' does not match ${patterns[column]}" + (column == 'sample' ? " (it names the output folder)" : ''))
        }
    }
    if (!r['fasta'] == !r['genome']) {
        error("${where}: give either fasta (loci FASTA) or genome (genome FASTA with gtf and genes, or with regions), not ${r['fasta'] ? 'both' : 'neither'}")
    }
    if (r['fasta'] && (r['genes'] || r['regions'])) {
        error("${where}: genes and regions need a genome column (a fasta row is windowed whole)")
    }
    if (r['genome'] && !r['regions'] && !(r['gtf'] && r['genes'])) {
        error("${where}: a genome row needs gtf and genes (names or all), or regions (a BED)")
    }
    if (r['regions'] && (r['genes'] || r['gtf'] || r['gene_type'])) {
        error("${where}: a regions row takes no gtf, genes or gene_type")
    }
    if (r['gene_type'] && !r['genes']) {
        error("${where}: gene_type needs genes (e.g. all)")
    }
    def meta = [id: id, genes: r['genes'] ?: '', gene_type: r['gene_type'] ?: '']
    def sequences = r['fasta'] ? 'fasta' : 'genome'
    return tuple(meta, located(sheet, where, sequences, r[sequences]), r['gtf'] ? [located(sheet, where, 'gtf', r['gtf'])] : [],
                 r['regions'] ? [located(sheet, where, 'regions', r['regions'])] : [])
}

// A samplesheet's file: absolute, a URL, or relative to the samplesheet's folder (a sheet travels
// with its data); a missing one stops the run with its line.
def located(Path sheet, String where, String column, String name) {
    def path = name.startsWith('/') || name.contains('://') ? file(name) : sheet.parent.resolve(name) as Path
    if (!path.exists()) {
        error("${where}: ${column} file not found: ${path}")
    }
    return path
}
