#!/usr/bin/env nextflow
/*
    evoscan: genomic windows that a DNA language model calls alike while no alignment can see
    any similarity, with the checks that make such a call believable. Steps are `evoscan`
    subcommands (bin/evoscan; the package is installed in the containers).

    nextflow run . -profile test,podman
    nextflow run . -profile slurm,singularity,gpu --input samplesheet.csv --backend evo2 --outdir results

    Results are published by each step's publishDir (conf/modules.config) into <outdir>/<sample>/,
    the versions of the tools each step ran into <outdir>/pipeline_info/. (Workflow outputs and
    topic channels would need preview flags in the Nextflow tested here that later ones refuse.)
*/
include { EVOSCAN } from './workflows/evoscan'
include { parameterSpecs; parameterErrors; misspelledParameters; backendOptionErrors; unknownParameters; samplesheetRows } from './subworkflows/local/utils_evoscan_pipeline'

workflow {
    main:
    // everything is checked before the first task: one line per problem, the run stops
    def specs = parameterSpecs(file("${projectDir}/nextflow_schema.json"))
    def problems = parameterErrors(params, specs) + misspelledParameters(params, specs) + backendOptionErrors(params)
    if (problems) {
        error("evoscan: " + problems.join('; '))
    }
    def unknown = unknownParameters(params, specs)
    if (unknown) {
        log.warn("evoscan: parameter(s) not in nextflow_schema.json, ignored: ${unknown.sort().collect { name -> '--' + name }.join(' ')}")
    }
    if (!params.input) {
        error("evoscan: give --input samplesheet.csv (columns sample,fasta,genome,gtf,genes), or use -profile test")
    }
    def sheet = file(params.input as String)
    if (!sheet.exists()) {
        error("evoscan: samplesheet not found: ${sheet} (--input)")
    }
    ch_samples = channel.fromList(samplesheetRows(sheet, file("${projectDir}/assets/schema_input.json")))

    rmsk = params.rmsk ? [file(params.rmsk as String, checkIfExists: true)] : []
    families = params.families ? [file(params.families as String, checkIfExists: true)] : []
    // files are staged into the tasks (an hf model directory too); a JASPAR release name, an evo2
    // model name and `--weights random` are options
    motifs = params.motifs ==~ /JASPAR\d{4}/ ? [] : [file(params.motifs as String, checkIfExists: true)]
    weights = params.weights && params.weights != 'random' ? [file(params.weights as String, checkIfExists: true)] : []
    model_dir = params.backend == 'hf' && params.model ? [file(params.model as String, checkIfExists: true)] : []
    model_config = params.model_config ? [file(params.model_config as String, checkIfExists: true)] : []
    EVOSCAN(ch_samples, rmsk, params.embed_chunks as Integer, params.search_chunks as Integer, families, motifs, weights,
        model_dir, model_config)

    // one line per process and tool, as nf-core's software_versions.yml
    EVOSCAN.out.versions
        .map { process, tool, version -> "${process.tokenize(':').last()}:\n  ${tool}: ${version}" }
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true, newLine: true)
}
